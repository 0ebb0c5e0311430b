"""Running the marks over whole clips: stamping (decode → visible → invisible → encode) and detection, both
streaming one frame at a time so memory does not grow with the clip's length."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path

import av

from guard.errors import InvalidInput, MarkingError
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
    """Mark an existing video file into an MP4 at `target`, keeping its audio and its frames' timing. The frames are
    marked and written upright (the source's display rotation applied, media.py). Written to a temp name and renamed
    only when complete: `target` is either the whole marked clip or absent."""
    check_output_path(target)
    if not (math.isfinite(strength) and strength > 0):
        raise InvalidInput(f"The watermark strength must be a positive number; got {strength}.",
                           hint="1 is the default; 2 for flat content.")
    info = probe(source)
    width, height = info.width & ~1, info.height & ~1
    fps = info.fps if info.fps > 0 else 25.0
    embedder = (method.embedder(payload, width, height, fps, strength=strength)
                if method is not None and payload is not None else None)
    visible = (VisibleMark(visible_label, width, height, fps, opacity=visible_opacity, scale=visible_scale)
               if visible_label else None)
    partial = temp_path_beside(target)
    try:
        with VideoWriter(partial, width, height, fps, crf=crf, preset=preset, time_base=info.time_base,
                         audio_from=source if info.has_audio else None) as writer:
            count = stamp_frames(read_frames(source), writer, visible=visible, embedder=embedder,
                                 progress=progress)
        partial.replace(target)
    except (OSError, av.error.FFmpegError) as exc:  # what writing can hit: permissions, a full or read-only disk
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInput(f"Cannot write {target}: {reason}.",
                           hint="Check that its directory is writable and has space.") from exc
    finally:
        with suppress(OSError):  # a read-only disk would fail this too; the error above is the one to report
            partial.unlink(missing_ok=True)
    return count


OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")  # containers that take the H.264 stream stamping writes


def check_output_path(target: Path) -> None:
    """Refuse, before any work, an output the encoder could not write: a directory, a missing directory, or a
    container that cannot hold H.264 (WebM, GIF) or whose type its name does not say."""
    if target.is_dir():
        raise InvalidInput(f"{target} is a directory.", hint="Give a file name, e.g. marked.mp4.")
    if not target.parent.is_dir():
        raise InvalidInput(f"The directory {target.parent} does not exist.", hint="Create it, or write elsewhere.")
    if target.suffix.lower() not in OUTPUT_SUFFIXES:
        problem = (f"the marked video is H.264, which a {target.suffix} file cannot hold" if target.suffix
                   else "without an extension the container to write is unknown")
        raise InvalidInput(f"{target.name}: {problem}.", hint="Name the output .mp4 (or .mov, .m4v, .mkv).")


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
