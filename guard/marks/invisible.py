"""The invisible watermark's interface: a method embeds a 64-bit payload into frames as they stream past, and a
detector reads frames as they stream past and says whether the mark is there, with which payload, and how likely
an unmarked clip would have scored as high (the p-value).

Methods are looked up by name (`watermark_method`), so the gateway, the CLI and the benchmark use the same code.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from dataclasses import dataclass
from typing import Protocol

from guard.errors import InvalidInput
from guard.media import Frame

PAYLOAD_BYTES = 8  # 64-bit payload: the generation's watermark id


@dataclass(frozen=True)
class Detection:
    detected: bool
    payload: bytes | None  # the exact payload, or None; a method never returns a payload it is not sure of
    p_value: float | None  # P(an unmarked clip scores at least this high); None if the method cannot bound it
    frames_used: int
    method: str
    score: float | None = None  # the method's own evidence statistic (e.g. bit agreement)
    note: str | None = None
    retired_key: str | None = None  # the payload was read with this retired watermark key (None: the current one)
    key_id: str | None = None  # the public id (watermark_key_id) of the key the payload was read with

    def as_dict(self) -> dict[str, object]:
        return {
            "detected": self.detected,
            "payload": self.payload.hex() if self.payload is not None else None,
            "p_value": self.p_value,
            "frames_used": self.frames_used,
            "method": self.method,
            "score": self.score,
            "note": self.note,
            "retired_key": self.retired_key,
            "key_id": self.key_id,
        }


class FrameEmbedder(Protocol):
    def apply(self, frame: Frame, index: int) -> None:
        """Mark `frame` (frame number `index` of the clip) in place."""


class FrameDetector(Protocol):
    def wants(self, index: int) -> bool:
        """Whether frame `index` should be decoded and passed to `add` (detectors may sample)."""

    def add(self, frame: Frame, index: int) -> None: ...

    def result(self) -> Detection: ...


class WatermarkMethod(Protocol):
    name: str
    soft_binding_alg: str  # the C2PA soft-binding `alg` identifier written into manifests
    strengths: tuple[float, ...]  # embedding strengths the gateway may use, default first

    def embedder(self, payload: bytes, width: int, height: int, fps: float, *,
                 strength: float = 1.0) -> FrameEmbedder: ...

    def detector(self, width: int, height: int, fps: float) -> FrameDetector: ...


def subkey(key: bytes, purpose: str) -> bytes:
    """A key for one purpose derived from the watermark secret (HMAC-SHA256), so methods never share key bits."""
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def watermark_key_id(key: bytes) -> str:
    """A public name for a watermark secret (16 hex digits), for logs and `hallmark keys list`: it tells keys apart
    and reveals nothing of the key."""
    return subkey(key, "key-id")[:8].hex()


def check_payload(payload: bytes) -> bytes:
    if len(payload) != PAYLOAD_BYTES:
        raise InvalidInput(f"A watermark payload is {PAYLOAD_BYTES * 8} bits ({PAYLOAD_BYTES * 2} hex digits); "
                           f"got {len(payload) * 8} bits.")
    return payload


def parse_payload_hex(text: str) -> bytes:
    digits = text.strip()
    if set(digits) <= set(string.hexdigits) and len(digits) % 2:
        raise InvalidInput(f"A watermark payload is {PAYLOAD_BYTES * 2} hex digits; {digits!r} has {len(digits)}.",
                           hint="Give 16 hex digits, e.g. 0123456789abcdef.")
    try:
        payload = bytes.fromhex(digits)
    except ValueError as exc:
        raise InvalidInput(f"{text!r} is not hexadecimal.", hint="Give 16 hex digits, e.g. 0123456789abcdef.") \
            from exc
    return check_payload(payload)
