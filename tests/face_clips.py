"""Real-footage clips for the cameo tests, built from ../shared/media at test time (never stored in the project).

head-pose-female.gif is one person turning her head: frames 0-8 face the image's left (she turns to HER right),
9 is frontal, 10-18 face the image's right (HER left), 19 is frontal, 20-22 turn slightly right again. A clip
answering a challenge is made by playing those frame ranges in the challenge's order (out and back for each move,
a frontal frame between moves); frames 2-3 (full profile, where the detector loses the face) are not used."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from guard.media import Frame, VideoWriter

GIF = "head-pose-female.gif"
GIF_FPS = 12.5
FRONTAL = 9
SEGMENTS = {
    "turn_left": [10, 11, 12, 13, 14, 15, 16, 17, 18, 19],  # her left: out to ~45 degrees and back to frontal
    "turn_right": [8, 7, 6, 5, 4, 5, 6, 7, 8, 9],  # her right: out to ~54 degrees and back to frontal
}


@lru_cache(maxsize=None)
def decoded(path: str) -> tuple[np.ndarray, ...]:
    with av.open(path) as container:
        return tuple(frame.to_ndarray(format="rgb24") for frame in container.decode(video=0))


def frame_of(media_dir: Path, name: str, index: int) -> np.ndarray:
    return decoded(str(media_dir / name))[index]


def challenge_frames(media_dir: Path, moves: list[str]) -> list[np.ndarray]:
    frames = decoded(str(media_dir / GIF))
    order = [FRONTAL, FRONTAL] + [index for move in moves for index in SEGMENTS[move]] + [FRONTAL]
    return [frames[index] for index in order]


def write_clip(frames: list[np.ndarray], target: Path, fps: float = GIF_FPS) -> Path:
    height, width = frames[0].shape[:2]
    with VideoWriter(target, width & ~1, height & ~1, fps, crf=18, preset="veryfast") as writer:
        for rgb in frames:
            writer.write(Frame.from_rgb(np.ascontiguousarray(rgb[: height & ~1, : width & ~1])))
    return target


def challenge_clip(media_dir: Path, moves: list[str], target: Path) -> Path:
    """An MP4 of the real face answering `moves` (turn_left / turn_right) in that order."""
    return write_clip(challenge_frames(media_dir, moves), target)


def still_clip(rgb: np.ndarray, target: Path, seconds: float = 3.0, fps: float = 10.0) -> Path:
    """A photo made into a video: the same picture in every frame."""
    return write_clip([rgb] * int(seconds * fps), target, fps)


def face_crop(media_dir: Path, name: str, index: int, size: tuple[int, int] = (480, 270)) -> np.ndarray:
    """A `size` window of a real frame centred on the face (asl-*.mkv: the signer's face is near the top)."""
    from guard.likeness.analysis import detect

    rgb = frame_of(media_dir, name, index)
    box = detect(rgb)[0][0]
    width, height = size
    cx, cy = (box.left + box.right) // 2, (box.top + box.bottom) // 2
    left = int(np.clip(cx - width // 2, 0, rgb.shape[1] - width))
    top = int(np.clip(cy - height // 2, 0, rgb.shape[0] - height))
    return rgb[top:top + height, left:left + width]


def two_face_clip(media_dir: Path, moves: list[str], target: Path) -> Path:
    """The challenge answer with a second real person (a signer from asl-night) side by side in every frame."""
    other = face_crop(media_dir, "asl-night.mkv", 10)
    return write_clip([np.hstack([frame, other]) for frame in challenge_frames(media_dir, moves)], target)


def no_face_clip(media_dir: Path, target: Path) -> Path:
    """Two seconds of real footage with nobody in it (bottles on a conveyor)."""
    frames = decoded(str(media_dir / "bottle-detection.mp4"))[:25]
    return write_clip(list(frames), target, fps=12.5)
