"""Hallmark's own invisible video watermark ("hallmark", soft-binding alg `org.hallmark.video.2`).

A keyed spread-spectrum pattern on luma: one tile of 28 x 28 chips (pilot + error-corrected payload), repeated over
the frame at a size proportional to the short side, identical in every frame and scaled by local texture. The
detector averages frames, recovers the tile lattice (so crops, resizes, small rotations and flips are found), reads
the payload under a convolutional code (soft Viterbi decoding) with a keyed MAC, and reports a p-value bounded
analytically under the null.

- layout.py: the keyed tile and how it is drawn over a frame
- code.py: payload + MAC → convolutional code (K = 9, rate 1/7) → 704 chip signs, and the Viterbi decoder
- embed.py: per-frame masking and addition
- detect.py: accumulation, lattice search, folding, pilot correlation, decoding, p-value
- stats.py: the tail bound behind the p-value
"""

from __future__ import annotations

from collections.abc import Sequence

from guard.errors import InvalidInput
from guard.marks.invisible import check_payload, watermark_key_id
from guard.marks.tiled.code import PayloadCode
from guard.marks.tiled.detect import THRESHOLD, ReadingKey, TiledDetector
from guard.marks.tiled.embed import TiledEmbedder
from guard.marks.tiled.layout import TileLayout, render

MIN_SHORT_SIDE = 128


class HallmarkTiled:
    name = "hallmark"
    soft_binding_alg = "org.hallmark.video.2"
    threshold = THRESHOLD
    # What the gateway tries, in order, until the mark reads back from the encoded clip: the default, then a
    # stronger pass for content too flat to carry it (see embed.py; PSNR stays ≥ 42.2 dB at both).
    strengths = (1.0, 2.0)

    def __init__(self, key: bytes, retired: Sequence[tuple[str, bytes]] = ()) -> None:
        """`key` marks and reads; `retired` (label, key) pairs are only read with, so that clips marked before a
        key rotation still resolve (detect.py counts every key in the p-value)."""
        self._layout = TileLayout.from_key(key)
        self._code = PayloadCode(key)
        self._reading = [ReadingKey(self._layout, self._code, watermark_key_id(key))] + [
            ReadingKey(TileLayout.from_key(old), PayloadCode(old), watermark_key_id(old), label)
            for label, old in retired]

    def embedder(self, payload: bytes, width: int, height: int, fps: float, *,
                 strength: float = 1.0) -> TiledEmbedder:
        if min(width, height) < MIN_SHORT_SIDE:
            raise InvalidInput(f"The video is {width}x{height}; the invisible watermark needs a short side of at "
                               f"least {MIN_SHORT_SIDE} px.", hint="Mark a larger rendition of the video.")
        tile = self._layout.tile(self._code.encode(check_payload(payload)))
        return TiledEmbedder(render(tile, width, height), strength)

    def detector(self, width: int, height: int, fps: float) -> TiledDetector:
        return TiledDetector(self.name, self._reading, width, height, fps)


__all__ = ["HallmarkTiled"]
