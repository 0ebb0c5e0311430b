"""The benchmark corpus: real footage from ../shared/media plus synthetic clips built from scikit-image's bundled
natural images (pans, zooms, flat gradients, dark scenes, fast motion) at 360p, 720p and 1080p.

Clips are written once under `bench/out/corpus/` (git-ignored) and reused; `frames_*` generators make the same
pictures in memory for the false-positive study, which needs hundreds of clips but no files.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from guard.media import Frame, probe, read_frames

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out"
MEDIA = (ROOT.parent.parent / "shared" / "media").resolve()
RESOLUTIONS = {"180p": (320, 180), "270p": (480, 270), "360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}
KINDS = ("pan", "zoom", "gradient", "dark", "motion")
IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry",
          "camera", "coins", "moon", "grass", "gravel", "brick", "clock", "cell", "cat")
FPS = 24.0


@dataclass(frozen=True)
class Clip:
    name: str
    kind: str  # "real" or one of KINDS
    resolution: str  # "360p", "720p", "1080p" or the real clip's size
    path: Path


def natural_image(name: str) -> np.ndarray:
    """A bundled scikit-image picture as RGB uint8."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float64) / max(1.0, float(image.max())))).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, :3])


def _cover(image: np.ndarray, width: int, height: int, margin: float) -> np.ndarray:
    """Resize `image` so that it covers width x height with `margin` to spare in each direction."""
    h, w = image.shape[:2]
    scale = max(width * margin / w, height * margin / h)
    return cv2.resize(image, (int(math.ceil(w * scale)), int(math.ceil(h * scale))), interpolation=cv2.INTER_CUBIC)


def synthetic_frames(kind: str, width: int, height: int, frames: int, seed: int) -> Iterator[np.ndarray]:
    """RGB frames of one synthetic clip."""
    rng = np.random.default_rng(seed)
    image = natural_image(IMAGES[seed % len(IMAGES)])
    if kind in ("pan", "dark", "motion"):
        speed = 1.0 if kind != "motion" else 6.0
        big = _cover(image, width, height, 1.25 if kind != "motion" else 1.6)
        bh, bw = big.shape[:2]
        x0, y0 = rng.uniform(0, bw - width), rng.uniform(0, bh - height)
        angle = rng.uniform(0, 2 * math.pi)
        for t in range(frames):
            # bounce inside the big picture; fast motion moves ~6x further per frame
            x = (x0 + speed * t * 0.004 * bw * math.cos(angle)) % (2 * (bw - width))
            y = (y0 + speed * t * 0.004 * bh * math.sin(angle)) % (2 * (bh - height))
            x = int(x if x <= bw - width else 2 * (bw - width) - x)
            y = int(y if y <= bh - height else 2 * (bh - height) - y)
            frame = big[y : y + height, x : x + width]
            if kind == "dark":
                frame = (frame.astype(np.float32) * 0.18 + 4).astype(np.uint8)  # a night scene: luma ~16-60
            yield frame
    elif kind == "zoom":
        big = _cover(image, width, height, 1.0)
        bh, bw = big.shape[:2]
        for t in range(frames):
            zoom = 1.0 + 0.35 * t / max(1, frames - 1)
            cw, ch = bw / zoom, bh / zoom
            x, y = (bw - cw) / 2, (bh - ch) / 2
            matrix = np.float32([[width / cw, 0, -x * width / cw], [0, height / ch, -y * height / ch]])
            yield cv2.warpAffine(big, matrix, (width, height), flags=cv2.INTER_LINEAR)
    elif kind == "gradient":
        colours = rng.uniform(30, 225, size=(4, 3))
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        for t in range(frames):
            phase = t / max(1, frames - 1)
            fx = (xs / width + 0.2 * phase)[..., None]
            fy = (ys / height)[..., None]
            top = colours[0] * (1 - fx) + colours[1] * fx
            bottom = colours[2] * (1 - fx) + colours[3] * fx
            yield np.clip(top * (1 - fy) + bottom * fy, 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unknown synthetic kind {kind!r}")


def write_clip(frames: Iterator[np.ndarray], path: Path, fps: float = FPS) -> Path:
    """Encode RGB frames as a near-lossless H.264 source clip (written to a temp name, then renamed)."""
    from bench.attacks import encode

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part.mp4")
    encode((Frame.from_rgb(f) for f in frames), partial, fps, crf=10, preset="veryfast")
    partial.replace(path)
    return path


def real_clips(seconds: float, directory: Path) -> list[Clip]:
    """The first `seconds` of every clip in ../shared/media (all of it when shorter), at its own size."""
    if not MEDIA.is_dir():
        return []
    clips = []
    for source in sorted(MEDIA.iterdir()):
        if source.suffix.lower() not in (".mp4", ".mkv", ".gif", ".mov", ".webm"):
            continue
        info = probe(source)
        fps = info.fps if info.fps > 0 else 25.0
        path = directory / f"real-{source.stem}.mp4"
        if not path.exists():
            frames = itertools.islice(read_frames(source), int(round(seconds * fps)))
            write_clip((f.to_rgb() for f in frames), path, fps)
        clips.append(Clip(path.stem, "real", f"{info.width}x{info.height}", path))
    return clips


def synthetic_clips(per_kind: dict[str, int], seconds: float, directory: Path) -> list[Clip]:
    """`per_kind[resolution]` clips of every kind at each resolution."""
    clips = []
    for resolution, count in per_kind.items():
        width, height = RESOLUTIONS[resolution]
        for kind in KINDS:
            for variant in range(count):
                seed = 1000 * KINDS.index(kind) + 37 * variant + width
                name = f"{kind}-{resolution}-{variant}"
                path = directory / f"{name}.mp4"
                if not path.exists():
                    write_clip(synthetic_frames(kind, width, height, int(round(seconds * FPS)), seed), path)
                clips.append(Clip(name, kind, resolution, path))
    return clips


def small_frames(directory: Path | None = None) -> list[Clip]:
    """One synthetic clip of every kind at 270p and at 180p: frames below 360p, where the mark has the fewest
    pixels to live in (benchmarked on their own, beside the corpus of `build`)."""
    directory = directory or OUT / "corpus"
    directory.mkdir(parents=True, exist_ok=True)
    return synthetic_clips({"270p": 1, "180p": 1}, 3.0, directory)


def build(*, quick: bool, directory: Path | None = None) -> list[Clip]:
    directory = directory or OUT / "corpus"
    directory.mkdir(parents=True, exist_ok=True)
    seconds = 3.0
    if quick:
        real = [c for c in real_clips(seconds, directory) if c.name in ("real-bottle-detection", "real-car-detection")]
        return real + synthetic_clips({"360p": 1, "720p": 1}, seconds, directory)[::2]
    return real_clips(seconds, directory) + synthetic_clips({"360p": 3, "720p": 3, "1080p": 1}, seconds, directory)
