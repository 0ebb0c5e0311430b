"""Running the marks over whole clips: stamping (decode → visible → invisible → encode) and detection, both
streaming one frame at a time so memory does not grow with the clip's length."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from guard.errors import MarkingError
from guard.marks.invisible import Detection, FrameEmbedder, WatermarkMethod
from guard.marks.visible import VisibleMark
from guard.media import Frame, VideoWriter, probe, read_frames, temp_path_beside

FrameProgress = Callable[[int], None]  # frames done so far


def stamp_frames(frames: Iterable[Frame], writer: VideoWriter, *, visible: VisibleMark | None,
                 embedder: FrameEmbedder | None, progress: FrameProgress | None = None) -> int:
    """Mark every frame (visible first, so the invisible mark is not disturbed by it) and encode it."""
    count = 0
    for index, frame in enumerate(frames):
        if visible is not None:
            visible.apply(frame, index)
        if embedder is not None:
            embedder.apply(frame, index)
        writer.write(frame)
        count = index + 1
        if progress is not None:
            progress(count)
    if count == 0:
        raise MarkingError("There were no frames to mark.")
    return count


def stamp_file(source: Path, target: Path, *, method: WatermarkMethod | None, payload: bytes | None,
               visible_label: str | None = None, visible_opacity: float = 0.45, visible_scale: float = 1.0,
               crf: int = 18, preset: str = "medium", progress: FrameProgress | None = None,
               strength: float = 1.0) -> int:
    """Mark an existing video file into an MP4 at `target`, keeping its audio. Written to a temp name and renamed
    only when complete: `target` is either the whole marked clip or absent."""
    info = probe(source)
    width, height = info.width & ~1, info.height & ~1
    fps = info.fps if info.fps > 0 else 25.0
    embedder = (method.embedder(payload, width, height, fps, strength=strength)
                if method is not None and payload is not None else None)
    visible = (VisibleMark(visible_label, width, height, fps, opacity=visible_opacity, scale=visible_scale)
               if visible_label else None)
    partial = temp_path_beside(target)
    try:
        with VideoWriter(partial, width, height, fps, crf=crf, preset=preset,
                         audio_from=source if info.has_audio else None) as writer:
            count = stamp_frames(read_frames(source), writer, visible=visible, embedder=embedder,
                                 progress=progress)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return count


def detect_frames(frames: Iterable[Frame], method: WatermarkMethod, width: int, height: int,
                  fps: float) -> Detection:
    detector = method.detector(width, height, fps)
    for index, frame in enumerate(frames):
        if detector.wants(index):
            detector.add(frame, index)
    return detector.result()


def detect_file(path: Path, method: WatermarkMethod) -> Detection:
    info = probe(path)
    return detect_frames(read_frames(path), method, info.width & ~1, info.height & ~1,
                         info.fps if info.fps > 0 else 25.0)
