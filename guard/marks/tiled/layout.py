"""The keyed tile: which chips carry the pilot and which the payload, with which signs, and how the tile is drawn
over a frame of any size.

The tile is M x M chips of ±1. A key-drawn permutation gives 80 chips to the pilot (the synchronisation signal the
detector correlates with) and 704 to the payload (the convolutional code's chips, code.py, each also flipped by a
key-drawn sign). All of it comes from SHAKE-256 of a subkey, so the pattern never changes with a library's random
generator.

The chip size is a fixed fraction of the frame's short side (`CHIPS_PER_SHORT_SIDE`) from 720p up, so the mark looks
the same at any such resolution and a resized copy carries it at the size the detector expects first. From 360p to
720p it stays at `MIN_CHIP` pixels (6, the 720p chip) instead of shrinking with the frame: on the 15 360p clips of
the benchmark corpus, a CRF 28 re-encode kept the payload in 5 with 3 px chips, 10 with 4.5 px and 10 with 6 px
(H.265: 2, 7, 9; CRF 33: 0, 4, 6). Below 360p the chip is 1/`SMALL_CHIPS_PER_SHORT_SIDE` of the short side, which
meets the 6 px at 360p (4.5 px at 270p, 4.3 px at 256p): there are too few pixels for 6 px chips (on a still 256 px
face they read back at z 2.3, the picture's own texture at that scale not averaging out, against z 6.7 for 3.2 px
chips), but 1/80 of the side (3.4 px at 270p) was too fine for the codecs. On four synthetic clips at 180p-270p and
the 270p real clip, each under the 20 attacks of the benchmark, 1/60 read 88 of 105 attacked copies against 79 for
1/80 (none lost; gained: H.264 CRF 28 and 33, H.265, VP9, downscale, blur, rotation) and 1/48 read 80 (a 70 % crop
then left too few tiles). The detector tries both the resize-only size and the native size below 720p (see
detect.py).

Larger chips lose, although SSIM lets a coarser pattern be stronger. Chips of 1/60 of the short side (8 px at 480p,
12 px at 720p, 18 px at 1080p; 6 px at 360p as now) read 91 of 144 heavy re-encodes of the 48 corpus clips against
103 (energy floor 0.25; H.264 CRF 33: 29 vs 35, H.265 CRF 28: 39 vs 44, the combined attack: 23 vs 24), gaining
none, at mean SSIM 0.9935 and PSNR 43.7 dB (`python -m bench.watermark_ab --set
guard.marks.tiled.layout.CHIPS_PER_SHORT_SIDE=60.0 --set guard.marks.tiled.detect.CHIPS_PER_SHORT_SIDE=60.0`). The
likely reason: x264 quantises its transform coefficients alike at every frequency (flat matrices), so a coarser
pattern keeps no more of itself, while the picture's own energy, which grows toward low frequencies, drowns it more.
Later, with the present embedder and detector, `MIN_CHIP` 8 read 116 of those 144 against 127 (the combined attack
26 vs 34, CRF 33 44 vs 46, H.265 46 vs 47): a 360p frame holds too few of its 224 px tiles once halved and cropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from guard.marks.invisible import subkey
from guard.marks.tiled.code import DATA_CHIPS

M = 28  # chips per tile side
CHIPS = M * M  # 784
PILOT_CHIPS = CHIPS - DATA_CHIPS  # 80
CHIPS_PER_SHORT_SIDE = 120.0  # chip = short side / 120 from 720p up: 6 px at 720p, 9 px at 1080p
MIN_CHIP = 6.0  # pixels: from 360p to 720p the chip keeps the 720p size
SMALL_FRAME = 360  # below this short side...
SMALL_CHIPS_PER_SHORT_SIDE = 60.0  # ...the chip is this fraction of it (6 px at 360p, as above)


def _stream(key: bytes, purpose: str, n: int) -> bytes:
    return hashlib.shake_256(subkey(key, purpose)).digest(n)


def _signs(key: bytes, purpose: str, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(_stream(key, purpose, (n + 7) // 8), dtype=np.uint8))[:n]
    return (1.0 - 2.0 * bits).astype(np.float32)


@dataclass(frozen=True)
class TileLayout:
    """Flat chip indices (row-major in the M x M tile) of the pilot and of the payload code's chips, in order."""

    pilot_index: np.ndarray  # (80,)
    pilot_sign: np.ndarray  # (80,) ±1
    data_index: np.ndarray  # (704,)
    data_sign: np.ndarray  # (704,) ±1

    @classmethod
    def from_key(cls, key: bytes) -> "TileLayout":
        order = np.frombuffer(_stream(key, "tiled-permutation", 8 * CHIPS), dtype="<u8")
        permutation = np.argsort(order, kind="stable")
        return cls(
            pilot_index=permutation[:PILOT_CHIPS],
            pilot_sign=_signs(key, "tiled-pilot", PILOT_CHIPS),
            data_index=permutation[PILOT_CHIPS:],
            data_sign=_signs(key, "tiled-data-signs", DATA_CHIPS),
        )

    def tile(self, code_signs: np.ndarray) -> np.ndarray:
        """The M x M chip values (±1) that carry these 704 code signs (code.py)."""
        chips = np.zeros(CHIPS, dtype=np.float32)
        chips[self.pilot_index] = self.pilot_sign
        chips[self.data_index] = code_signs * self.data_sign
        return chips.reshape(M, M)

    def pilot_grid(self) -> np.ndarray:
        """M x M: the pilot's signs at its chips, 0 elsewhere."""
        grid = np.zeros(CHIPS, dtype=np.float32)
        grid[self.pilot_index] = self.pilot_sign
        return grid.reshape(M, M)

    def code_values(self, chips: np.ndarray) -> np.ndarray:
        """The payload code's soft values (..., 704) read from tiles of chip values (..., M, M): each data chip
        with its key sign taken off, so that its sign is the code bit sent."""
        flat = chips.reshape(*chips.shape[:-2], CHIPS)
        return flat[..., self.data_index] * self.data_sign


def chip_size(width: int, height: int) -> float:
    """The chip's side in pixels for a frame marked at this size."""
    short = min(width, height)
    if short < SMALL_FRAME:
        return short / SMALL_CHIPS_PER_SHORT_SIDE
    return max(short / CHIPS_PER_SHORT_SIDE, MIN_CHIP)


def _interpolation_matrix(length: int, chip: float) -> np.ndarray:
    """(length, M): row x holds the bilinear weights of the (periodic) chips at pixel x; chip j is centred on
    pixel (j + 0.5) * chip - 0.5."""
    position = (np.arange(length, dtype=np.float64) + 0.5) / chip - 0.5
    left = np.floor(position)
    frac = (position - left).astype(np.float32)
    left = left.astype(np.int64) % M
    matrix = np.zeros((length, M), dtype=np.float32)
    rows = np.arange(length)
    matrix[rows, left] += 1.0 - frac
    matrix[rows, (left + 1) % M] += frac
    return matrix


def render(tile: np.ndarray, width: int, height: int) -> np.ndarray:
    """The tile repeated over a width x height frame with bilinear chips, scaled to unit RMS (float32)."""
    chip = chip_size(width, height)
    pattern = _interpolation_matrix(height, chip) @ tile @ _interpolation_matrix(width, chip).T
    rms = float(np.sqrt(np.mean(pattern.astype(np.float64) ** 2)))
    return (pattern / max(rms, 1e-6)).astype(np.float32)
