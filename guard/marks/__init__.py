"""Marks applied to every released clip: the visible moving label and the invisible keyed watermark."""

from __future__ import annotations

from collections.abc import Sequence

from guard.errors import InvalidInput
from guard.marks.invisible import (
    Detection,
    FrameDetector,
    FrameEmbedder,
    WatermarkMethod,
    parse_payload_hex,
    watermark_key_id,
)
from guard.marks.visible import VisibleMark, VisibleMarkStyle, label_text

METHODS = ("hallmark", "dwtDctSvd")


def watermark_method(name: str, key: bytes, retired: Sequence[tuple[str, bytes]] = ()) -> WatermarkMethod:
    """The invisible watermark method called `name`, keyed with the operator's watermark secret. `retired` (label,
    key) pairs are earlier secrets it also reads with (the v0 baseline, dwtDctSvd, reads with `key` only)."""
    if name == "hallmark":
        from guard.marks.tiled import HallmarkTiled

        return HallmarkTiled(key, retired)
    if name == "dwtDctSvd":
        from guard.marks.dwtdctsvd import DwtDctSvd

        return DwtDctSvd(key)
    raise InvalidInput(f"Unknown watermark method {name!r}.", hint=f"Use one of: {', '.join(METHODS)}.")


__all__ = ["Detection", "FrameDetector", "FrameEmbedder", "METHODS", "VisibleMark", "VisibleMarkStyle",
           "WatermarkMethod", "label_text", "parse_payload_hex", "watermark_key_id", "watermark_method"]
