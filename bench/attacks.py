"""The named attack suite: what platforms and people do to a video, as file → file functions the benchmark and the
tests share.

Codec attacks re-encode with PyAV's bundled FFmpeg encoders (x264/x265 medium, yuv420p; libvpx-vp9). Picture attacks
decode, change every frame with OpenCV, and re-encode at high quality (H.264 CRF 18, preset `fast`), so that what
is measured is the transform, not a second lossy encode. Everything is seeded from the clip's name: a run is
repeatable.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from guard.media import Frame, VideoWriter, probe, read_frames

FrameOp = Callable[[np.ndarray], np.ndarray]  # RGB uint8 (H, W, 3) → RGB uint8 (any even size)

CARRIER = {"codec": "libx264", "crf": 18, "preset": "fast"}  # the re-encode after a picture attack


@dataclass(frozen=True)
class Attack:
    name: str  # machine name, e.g. "h264_crf28"
    label: str  # table label, e.g. "H.264 CRF 28"
    target: float  # required exact-payload recovery rate (the targets)
    run: Callable[[Path, Path], Path] = field(repr=False)  # (source, output stem) → attacked file

    def __call__(self, source: Path, out_stem: Path) -> Path:
        return self.run(source, out_stem)


def _seed(path: Path, salt: str) -> int:
    return zlib.crc32(f"{path.stem}:{salt}".encode())


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def encode(frames: Iterator[Frame], target: Path, fps: float, *, codec: str = "libx264", crf: int = 18,
           preset: str | None = "medium", options: dict[str, str] | None = None) -> Path:
    """Encode frames (sized by the first one) to `target`."""
    first = next(frames)
    with VideoWriter(target, first.width, first.height, fps, codec=codec, crf=crf, preset=preset,
                     options=options) as writer:
        writer.write(first)
        for frame in frames:
            writer.write(frame)
    return target


def _fps(source: Path) -> float:
    fps = probe(source).fps
    return fps if fps > 0 else 25.0


def codec_attack(name: str, label: str, target: float, *, codec: str, crf: int, suffix: str = ".mp4",
                 preset: str | None = "medium", options: dict[str, str] | None = None) -> Attack:
    def run(source: Path, out_stem: Path) -> Path:
        return encode(read_frames(source), out_stem.with_suffix(suffix), _fps(source), codec=codec, crf=crf,
                      preset=preset, options=options)

    return Attack(name, label, target, run)


def picture_attack(name: str, label: str, target: float, make_op: Callable[[Path, int, int], FrameOp]) -> Attack:
    """An attack that changes every frame; `make_op(source, width, height)` builds the (seeded) per-frame op."""

    def run(source: Path, out_stem: Path) -> Path:
        info = probe(source)
        op = make_op(source, info.width & ~1, info.height & ~1)
        frames = (Frame.from_rgb(_even_crop(op(frame.to_rgb()))) for frame in read_frames(source))
        return encode(frames, out_stem.with_suffix(".mp4"), _fps(source), **CARRIER)

    return Attack(name, label, target, run)


def _even_crop(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return rgb[: h & ~1, : w & ~1]


# --- per-frame operations ---------------------------------------------------------------------------------------
def resize_to(width: int, height: int) -> FrameOp:
    return lambda rgb: cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def scale_op(factor: float) -> Callable[[Path, int, int], FrameOp]:
    return lambda source, w, h: resize_to(_even(w * factor), _even(h * factor))


def to_360p(source: Path, w: int, h: int) -> FrameOp:
    if min(w, h) <= 360:
        return lambda rgb: rgb  # already 360p or smaller
    factor = 360 / min(w, h)
    return resize_to(_even(w * factor), _even(h * factor))


def crop_op(keep: float) -> Callable[[Path, int, int], FrameOp]:
    def make(source: Path, w: int, h: int) -> FrameOp:
        rng = np.random.default_rng(_seed(source, f"crop{keep}"))
        cw, ch = _even(w * keep), _even(h * keep)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return lambda rgb: rgb[y : y + ch, x : x + cw]

    return make


def brightness(factor: float) -> Callable[[Path, int, int], FrameOp]:
    return lambda source, w, h: (lambda rgb: cv2.convertScaleAbs(rgb, alpha=factor, beta=0))


def contrast(factor: float) -> Callable[[Path, int, int], FrameOp]:
    def op(rgb: np.ndarray) -> np.ndarray:
        mean = float(rgb.mean())
        return np.clip((rgb.astype(np.float32) - mean) * factor + mean + 0.5, 0, 255).astype(np.uint8)

    return lambda source, w, h: op


def grayscale(source: Path, w: int, h: int) -> FrameOp:
    return lambda rgb: cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def blur(sigma: float) -> Callable[[Path, int, int], FrameOp]:
    return lambda source, w, h: (lambda rgb: cv2.GaussianBlur(rgb, (0, 0), sigma))


def noise(sigma: float) -> Callable[[Path, int, int], FrameOp]:
    def make(source: Path, w: int, h: int) -> FrameOp:
        rng = np.random.default_rng(_seed(source, "noise"))
        return lambda rgb: np.clip(rgb + rng.normal(0, sigma, rgb.shape).astype(np.float32) + 0.5, 0,
                                   255).astype(np.uint8)

    return make


def hflip(source: Path, w: int, h: int) -> FrameOp:
    return lambda rgb: np.ascontiguousarray(rgb[:, ::-1])


def rotate(degrees: float) -> Callable[[Path, int, int], FrameOp]:
    def make(source: Path, w: int, h: int) -> FrameOp:
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        return lambda rgb: cv2.warpAffine(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_CONSTANT)

    return make


# --- attacks on time --------------------------------------------------------------------------------------------
def frame_rate_attack(name: str, label: str, target: float, new_fps: float) -> Attack:
    def run(source: Path, out_stem: Path) -> Path:
        old_fps = _fps(source)

        def frames() -> Iterator[Frame]:
            wanted = 0
            for index, frame in enumerate(read_frames(source)):
                if index >= round(wanted * old_fps / new_fps):  # keep the frame nearest each new tick
                    wanted += 1
                    yield frame

        return encode(frames(), out_stem.with_suffix(".mp4"), new_fps, **CARRIER)

    return Attack(name, label, target, run)


def excerpt_attack(name: str, label: str, target: float, seconds: float) -> Attack:
    def run(source: Path, out_stem: Path) -> Path:
        info = probe(source)
        fps = _fps(source)
        total = info.frame_count or sum(1 for _ in read_frames(source))
        length = min(total, int(round(seconds * fps)))
        start = (total - length) // 2

        def frames() -> Iterator[Frame]:
            for index, frame in enumerate(read_frames(source)):
                if start <= index < start + length:
                    yield frame

        return encode(frames(), out_stem.with_suffix(".mp4"), fps, **CARRIER)

    return Attack(name, label, target, run)


def combo_attack(name: str, label: str, target: float) -> Attack:
    """H.264 CRF 28 + downscale 50 % + crop 80 % + brightness 1.2, in one pass and one lossy encode."""

    def run(source: Path, out_stem: Path) -> Path:
        info = probe(source)
        w, h = info.width & ~1, info.height & ~1
        small = resize_to(_even(w * 0.5), _even(h * 0.5))
        crop = crop_op(0.8)(source, _even(w * 0.5), _even(h * 0.5))
        bright = brightness(1.2)(source, w, h)
        frames = (Frame.from_rgb(_even_crop(bright(crop(small(f.to_rgb()))))) for f in read_frames(source))
        return encode(frames, out_stem.with_suffix(".mp4"), _fps(source), codec="libx264", crf=28,
                      preset="medium")

    return Attack(name, label, target, run)


VP9_OPTIONS = {"b": "0", "cpu-used": "5", "row-mt": "1", "deadline": "good"}

ATTACKS: dict[str, Attack] = {a.name: a for a in [
    codec_attack("h264_crf23", "H.264 CRF 23", 0.99, codec="libx264", crf=23),
    codec_attack("h264_crf28", "H.264 CRF 28", 0.99, codec="libx264", crf=28),
    codec_attack("h265_crf28", "H.265 CRF 28", 0.99, codec="libx265", crf=28),
    codec_attack("vp9_crf36", "VP9 CRF 36", 0.99, codec="libvpx-vp9", crf=36, suffix=".webm", preset=None,
                 options=VP9_OPTIONS),
    picture_attack("scale_50", "downscale 50 %", 0.99, scale_op(0.5)),
    picture_attack("scale_360p", "downscale to 360p", 0.99, to_360p),
    picture_attack("crop_70", "crop 70 % (random offset)", 0.99, crop_op(0.7)),
    picture_attack("bright_125", "brightness +25 %", 0.99, brightness(1.25)),
    picture_attack("bright_75", "brightness -25 %", 0.99, brightness(0.75)),
    picture_attack("contrast_07", "contrast 0.7", 0.99, contrast(0.7)),
    picture_attack("contrast_13", "contrast 1.3", 0.99, contrast(1.3)),
    picture_attack("grayscale", "saturation 0", 0.99, grayscale),
    picture_attack("blur_15", "gaussian blur σ 1.5", 0.99, blur(1.5)),
    picture_attack("noise_5", "gaussian noise σ 5", 0.99, noise(5.0)),
    frame_rate_attack("fps_15", "frame rate → 15 fps", 0.99, 15.0),
    excerpt_attack("excerpt_2s", "2 s excerpt (middle)", 0.99, 2.0),
    picture_attack("hflip", "horizontal flip", 0.99, hflip),
    codec_attack("h264_crf33", "H.264 CRF 33", 0.95, codec="libx264", crf=33),
    picture_attack("rotate_5", "rotation 5°", 0.95, rotate(5.0)),
    combo_attack("combo", "CRF 28 + 50 % + crop 80 % + bright 1.2", 0.95),
]}
