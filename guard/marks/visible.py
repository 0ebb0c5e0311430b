"""The visible watermark: a semi-transparent label ("AI-generated · operator · short id") that drifts across the
picture, so that no fixed crop or blur box removes it from every frame.

The label is rendered once per clip (Pillow's built-in scalable font: no font file to ship) into an alpha mask,
then blended into the luma and chroma planes of each frame. Only the label's bounding box is touched, which keeps
the cost per frame far below a millisecond at 720p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from guard.errors import InvalidInput
from guard.media import Frame


@dataclass(frozen=True)
class VisibleMarkStyle:
    text: str = "AI-generated"
    opacity: float = 0.45  # of the light fill; the dark outline is a little stronger so the label reads on white
    scale: float = 1.0  # 1.0: the label's text is 4.5 % of the short side tall (min 9 px)


def label_text(style: VisibleMarkStyle, operator: str, short_id: str) -> str:
    return " · ".join(part for part in (style.text, operator, short_id) if part)


class VisibleMark:
    """Blends a pre-rendered label into frames along a path that sweeps the whole picture.

    The path is a Lissajous curve (periods of 5.3 s across and 4.5 s down, phase from the clip id), so over a
    few seconds the label passes through every region of the frame, and a crop that keeps any useful part of the
    picture keeps the whole label in some of the frames. The periods were chosen for that: with 5.3 s and 3.7 s
    (before), some clip ids left a crop keeping half of each side without the whole label for 20 s (8 of 40 ids
    at 1280x720); with 5.3 s and 4.5 s, none of 300 ids did, at 256p to 2160p, 12.5 to 60 fps, for crops keeping
    half or 70 % of each side anywhere in the frame (13 x 13 offsets). Over 10 s the 70 % crops are all covered,
    the half-size ones mostly (fewest misses of the pairs tried)."""

    def __init__(self, text: str, width: int, height: int, fps: float, *, opacity: float = 0.45,
                 scale: float = 1.0, phase_seed: int = 0) -> None:
        if not (math.isfinite(opacity) and 0.0 < opacity <= 1.0):
            raise InvalidInput(f"The visible label's opacity must be in (0, 1]; got {opacity}.", hint="e.g. 0.45")
        if not (math.isfinite(scale) and scale > 0.0):
            raise InvalidInput(f"The visible label's scale must be a positive number; got {scale}.", hint="e.g. 1")
        self.width, self.height, self.fps = width, height, fps
        text_px = max(9, int(round(min(width, height) * 0.045 * scale)))
        fill, outline = _render_label(text, text_px)
        while (fill.shape[1] > width or fill.shape[0] > height) and text_px > 6:
            # A narrow frame: shrink the label until it fits (legibility is then bounded by the frame itself).
            text_px = max(6, int(text_px * min(width / fill.shape[1], height / fill.shape[0]) * 0.95))
            fill, outline = _render_label(text, text_px)
        # Still wider than the frame at the smallest size (a long label on a small frame): it is cut at the frame's
        # edge rather than refused, so a clip is never released without its label for the label's length.
        fill, outline = fill[:height & ~1, :width & ~1], outline[:height & ~1, :width & ~1]
        strong = min(1.0, opacity * 1.25)
        # Luma target: fill → white, outline → black; alpha is the combined coverage of both.
        self._alpha = np.clip(fill * opacity + outline * strong, 0.0, 1.0).astype(np.float32)
        covered = np.maximum(self._alpha, 1e-6)
        self._luma = ((fill * opacity * 235.0 + outline * strong * 16.0) / covered).astype(np.float32)
        self._alpha_c = np.ascontiguousarray(self._alpha[::2, ::2])
        self.label_h, self.label_w = self._alpha.shape
        rng = np.random.default_rng(phase_seed)
        self._phase = rng.uniform(0, 2 * math.pi, size=2)

    def position(self, index: int) -> tuple[int, int]:
        """Top-left corner of the label in frame `index` (even coordinates, to line up with 4:2:0 chroma)."""
        t = index / self.fps
        fx = 0.5 + 0.5 * math.sin(2 * math.pi * t / 5.3 + self._phase[0])
        fy = 0.5 + 0.5 * math.sin(2 * math.pi * t / 4.5 + self._phase[1])
        x = int(fx * (self.width - self.label_w)) & ~1
        y = int(fy * (self.height - self.label_h)) & ~1
        return x, y

    def apply(self, frame: Frame, index: int) -> None:
        x, y = self.position(index)
        h, w = self.label_h, self.label_w
        region = frame.y[y : y + h, x : x + w]
        blended = region * (1.0 - self._alpha) + self._luma * self._alpha
        region[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        # Pull the chroma under the label towards neutral grey, so the label is white/black, not tinted.
        ch, cw = self._alpha_c.shape
        for plane in (frame.u, frame.v):
            chroma = plane[y // 2 : y // 2 + ch, x // 2 : x // 2 + cw]
            chroma[...] = np.clip(chroma * (1.0 - self._alpha_c) + 128.0 * self._alpha_c + 0.5, 0, 255).astype(
                np.uint8
            )


def _render_label(text: str, text_px: int) -> tuple[np.ndarray, np.ndarray]:
    """(fill, outline) coverage masks in [0, 1], same shape, with a margin for the outline."""
    font = ImageFont.load_default(size=text_px)
    stroke = max(1, text_px // 12)
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    pad = stroke + 1
    size = (right - left + 2 * pad + 1) & ~1, (bottom - top + 2 * pad + 1) & ~1
    outline_img = Image.new("L", size, 0)
    ImageDraw.Draw(outline_img).text((pad - left, pad - top), text, font=font, fill=255, stroke_width=stroke,
                                     stroke_fill=255)
    fill_img = Image.new("L", size, 0)
    ImageDraw.Draw(fill_img).text((pad - left, pad - top), text, font=font, fill=255)
    fill = np.asarray(fill_img, dtype=np.float32) / 255.0
    outline = np.clip(np.asarray(outline_img, dtype=np.float32) / 255.0 - fill, 0.0, 1.0)
    return fill, outline
