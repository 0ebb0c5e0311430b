"""Reference images against the works' registered images, by perceptual hashes (imagehash).

Two 64-bit hashes per image, DCT (pHash) and gradient (dHash): both survive re-encoding, resizing, small colour and
brightness changes; a mirrored copy is caught by also hashing the mirrored query. The score is the share of the 128
bits that agree, so an unrelated picture scores about 0.5 and a re-encoded copy about 0.95. Crops and heavy edits
are out of reach of any global hash; the policy threshold sets how close counts as a copy. The search is a linear
scan of packed hashes (popcount of XOR), well under a millisecond for 100,000 images."""

from __future__ import annotations

import io
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

BITS = 128


@dataclass(frozen=True)
class ImageHashes:
    phash: int
    dhash: int

    @classmethod
    def of(cls, image: Image.Image) -> "ImageHashes":
        image = image.convert("RGB")
        return cls(int(str(imagehash.phash(image)), 16), int(str(imagehash.dhash(image)), 16))

    def hex(self) -> str:
        return f"{self.phash:016x}{self.dhash:016x}"

    @classmethod
    def from_hex(cls, value: str) -> "ImageHashes":
        if len(value) != 32:
            raise ValueError(f"an image hash must be 32 hex digits, got {value!r}")
        return cls(int(value[:16], 16), int(value[16:], 16))


def open_image(data: bytes) -> Image.Image:
    """Decode image bytes; ValueError with a plain message when they are not an image."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a readable image ({exc})") from exc
    return ImageOps.exif_transpose(image)


def query_hashes(image: Image.Image) -> list[ImageHashes]:
    return [ImageHashes.of(image), ImageHashes.of(ImageOps.mirror(image))]


@dataclass(frozen=True)
class ImageHit:
    key: Hashable
    label: str  # the registered image (its file name or digest)
    score: float  # share of agreeing bits, 0..1


class ImageIndex:
    def __init__(self, entries: Sequence[tuple[Hashable, str, ImageHashes]]) -> None:
        self.keys = [key for key, _, _ in entries]
        self.labels = [label for _, label, _ in entries]
        self.phash = np.asarray([h.phash for _, _, h in entries], dtype=np.uint64)
        self.dhash = np.asarray([h.dhash for _, _, h in entries], dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.keys)

    def search(self, queries: Sequence[ImageHashes], *, floor: float) -> list[ImageHit]:
        if not self.keys or not queries:
            return []
        best = np.zeros(len(self.keys))
        for query in queries:
            differing = (np.bitwise_count(self.phash ^ np.uint64(query.phash)).astype(np.int64)
                         + np.bitwise_count(self.dhash ^ np.uint64(query.dhash)))
            best = np.maximum(best, 1.0 - differing / BITS)
        hits: dict[Hashable, ImageHit] = {}
        for row in np.nonzero(best >= floor)[0].tolist():
            key = self.keys[row]
            if key not in hits or hits[key].score < best[row]:
                hits[key] = ImageHit(key, self.labels[row], float(best[row]))
        return list(hits.values())
