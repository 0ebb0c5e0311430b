"""invisible-watermark's dwtDctSvd (the v0 method, and a baseline in the benchmark).

The library has no key, no error correction and no presence test (an unmarked frame decodes to all zeros). We key
it minimally by XOR-ing the payload with a pad derived from the secret, vote bits across sampled frames, and call
the mark present only when the frames agree strongly; no p-value can be given. Embedding costs ~70 ms per 640x360
frame, because the library works on BGR pictures (two colour conversions per frame).
"""

from __future__ import annotations

import numpy as np

from guard.errors import InvalidInput
from guard.marks.invisible import PAYLOAD_BYTES, Detection, check_payload, subkey
from guard.media import Frame

_AGREEMENT_THRESHOLD = 0.85  # mean per-bit agreement of the sampled frames with their majority vote


def _bgr(frame: Frame) -> np.ndarray:
    return np.ascontiguousarray(frame.to_rgb()[:, :, ::-1])


def _store_bgr(frame: Frame, bgr: np.ndarray) -> None:
    marked = Frame.from_rgb(np.ascontiguousarray(bgr[:, :, ::-1]))
    frame.buffer[...] = marked.buffer


class DwtDctSvd:
    name = "dwtDctSvd"
    soft_binding_alg = "org.hallmark.dwtdctsvd.1"
    strengths = (1.0,)  # the decoder assumes the embedding's quantisation step, so there is one strength

    def __init__(self, key: bytes) -> None:
        self._pad = np.unpackbits(np.frombuffer(subkey(key, "dwtDctSvd-pad")[:PAYLOAD_BYTES], dtype=np.uint8))

    def embedder(self, payload: bytes, width: int, height: int, fps: float, *,
                 strength: float = 1.0) -> "_Embedder":
        if strength not in self.strengths:
            raise InvalidInput(f"dwtDctSvd embeds at strength 1 only (asked for {strength}).")
        bits = np.unpackbits(np.frombuffer(check_payload(payload), dtype=np.uint8)) ^ self._pad
        return _Embedder(bits)

    def detector(self, width: int, height: int, fps: float) -> "_Detector":
        return _Detector(self._pad, max(1, int(round(fps / 4))))


class _Embedder:
    def __init__(self, bits: np.ndarray) -> None:
        from imwatermark import WatermarkEncoder

        self._encoder = WatermarkEncoder()
        self._encoder.set_watermark("bits", [int(b) for b in bits])

    def apply(self, frame: Frame, index: int) -> None:
        _store_bgr(frame, self._encoder.encode(_bgr(frame), "dwtDctSvd"))


class _Detector:
    def __init__(self, pad: np.ndarray, step: int) -> None:
        from imwatermark import WatermarkDecoder

        self._decoder = WatermarkDecoder("bits", len(pad))
        self._pad = pad
        self._step = step
        self._votes: list[np.ndarray] = []

    def wants(self, index: int) -> bool:
        return index % self._step == 0

    def add(self, frame: Frame, index: int) -> None:
        if frame.width * frame.height < 256 * 256:  # the library refuses smaller pictures
            return
        self._votes.append(np.asarray(self._decoder.decode(_bgr(frame), "dwtDctSvd"), dtype=np.uint8))

    def result(self) -> Detection:
        if not self._votes:
            return Detection(False, None, None, 0, DwtDctSvd.name, note="no frame large enough to decode")
        votes = np.stack(self._votes)
        majority = (votes.mean(axis=0) >= 0.5).astype(np.uint8)
        agreement = float((votes == majority).mean())
        present = agreement >= _AGREEMENT_THRESHOLD and majority.any()
        payload = np.packbits(majority ^ self._pad).tobytes() if present else None
        return Detection(bool(present), payload, None, len(self._votes), DwtDctSvd.name, score=agreement,
                         note="dwtDctSvd has no presence test; no false-positive bound")
