"""One pass over a video for registration: faces, landmarks and head pose on sampled frames (up to 8 per second),
frame-to-frame motion, and embeddings of a few clear one-face frames spread over the whole clip.

Frames stream (one decoded frame in memory at a time); only small crops around faces are kept for embedding, at
most twice the number of embeddings wanted, so a long or large upload costs no more memory than a short one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from guard.likeness.analysis import SECOND_FACE_SCORE, FaceCrop, FaceObservation, analyze, crop_face
from guard.media import VideoInfo, probe, read_frames

MAX_ANALYSIS_FPS = 8.0
RECOGNISABLE_SCORE = 0.5  # detector margin below which a face is too turned, blurred or covered to identify
IMAGE_CONTAINERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe")


@dataclass(frozen=True)
class SampledFrame:
    index: int  # frame number in the file
    time: float  # seconds
    faces: list[FaceObservation]  # the people in it (further detections below SECOND_FACE_SCORE are dropped)
    motion: float  # mean absolute luma change since the previous sampled frame (0..255)


@dataclass
class VideoFaces:
    info: VideoInfo
    decoded_frames: int
    frames: list[SampledFrame] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.empty((0, 128), np.float32))
    embedded_times: list[float] = field(default_factory=list)
    truncated: bool = False  # longer than max_seconds: analysis stopped there

    @property
    def is_still_picture(self) -> bool:
        return self.info.container in IMAGE_CONTAINERS or (self.decoded_frames < 2 and not self.truncated)

    @property
    def duration(self) -> float:
        if self.info.duration:
            return float(self.info.duration)
        return self.decoded_frames / self.info.fps if self.info.fps else 0.0

    def count(self, faces: int) -> int:
        return sum(1 for frame in self.frames if len(frame.faces) == faces)

    @property
    def multi_face_frames(self) -> int:
        return sum(1 for frame in self.frames if len(frame.faces) > 1)


def people_in(faces: list[FaceObservation]) -> list[FaceObservation]:
    """The best detection always counts; others only when confident (a HOG false positive on a badge or a
    pattern scores near zero, a second real face well above)."""
    return faces[:1] + [face for face in faces[1:] if face.score >= SECOND_FACE_SCORE]


def analyze_video(path: Path, *, max_seconds: float, max_embeddings: int = 10,
                  max_fps: float = MAX_ANALYSIS_FPS,
                  on_progress: Callable[[float], None] | None = None) -> VideoFaces:
    """Raises MediaError (from guard.media) when the file is not a decodable video."""
    info = probe(path)
    fps = info.fps if info.fps and info.fps > 0 else 25.0
    step = max(1, int(round(fps / max_fps)))
    total = info.frame_count or (info.duration * fps if info.duration else fps * max_seconds)
    expected = int(min(total, fps * max_seconds)) // step + 1
    keep_every = max(1, expected // (2 * max_embeddings))
    result = VideoFaces(info=info, decoded_frames=0)
    if info.duration and info.duration > max_seconds:  # too long: say so without decoding any of it
        result.truncated = True
        return result
    crops: list[tuple[float, FaceCrop]] = []
    previous: np.ndarray | None = None
    for index, frame in enumerate(read_frames(path)):
        result.decoded_frames = index + 1
        time = index / fps
        if time > max_seconds:
            result.truncated = True
            break
        if index % step:
            continue
        rgb = frame.to_rgb()
        small = cv2.resize(frame.y, (64, max(1, round(64 * frame.height / frame.width))),
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        motion = float(np.abs(small - previous).mean()) if previous is not None else 0.0
        previous = small
        # The face cannot shrink much between two samples a tenth of a second apart: detect at the scale the last
        # face needs (60 % of its size still found), the default scale when there was none.
        last = result.frames[-1].faces if result.frames else []
        smallest = 0.6 * min(face.box.width for face in last) if last else None
        faces = people_in(analyze(rgb, embed_faces=False, smallest_face=smallest))
        sample_number = len(result.frames)
        result.frames.append(SampledFrame(index=index, time=time, faces=faces, motion=motion))
        if len(faces) == 1 and faces[0].score >= RECOGNISABLE_SCORE and sample_number % keep_every == 0:
            crops.append((time, crop_face(rgb, faces[0])))
        if on_progress is not None:
            on_progress(min(1.0, len(result.frames) / max(expected, 1)))
    if crops:
        chosen = np.unique(np.linspace(0, len(crops) - 1, min(max_embeddings, len(crops))).round().astype(int))
        result.embeddings = np.stack([crops[i][1].embedding() for i in chosen])
        result.embedded_times = [crops[i][0] for i in chosen]
    return result
