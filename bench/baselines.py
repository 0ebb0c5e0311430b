"""invisible-watermark's methods (dwtDct, dwtDctSvd, rivaGan) behind the same embedder/detector interface, so the
benchmark runs them side by side with Hallmark's method on the same clips and attacks.

The library has no key, no error correction and no presence test. As in guard/marks/dwtdctsvd.py, the payload is
XOR-ed with a key pad, bits are voted across sampled frames, and "recovered" means the voted bits equal the
embedded ones exactly. dwtDct and dwtDctSvd carry 64 bits; rivaGan carries 32 (its model's fixed size), so its
payload is the first 32 bits. Frames under 256x256 pixels are refused by the library and are skipped.
"""

from __future__ import annotations

import numpy as np

from guard.marks.invisible import Detection, subkey
from guard.media import Frame


def _bgr(frame: Frame) -> np.ndarray:
    return np.ascontiguousarray(frame.to_rgb()[:, :, ::-1])


class ImwatermarkBaseline:
    def __init__(self, algorithm: str, key: bytes) -> None:
        self.name = algorithm
        self.bits = 32 if algorithm == "rivaGan" else 64
        self.soft_binding_alg = f"bench.imwatermark.{algorithm}"
        self.strengths = (1.0,)
        self._pad = np.unpackbits(np.frombuffer(subkey(key, f"bench-{algorithm}")[: self.bits // 8], np.uint8))
        if algorithm == "rivaGan":
            from imwatermark import WatermarkDecoder, WatermarkEncoder

            WatermarkEncoder.loadModel()
            WatermarkDecoder.loadModel()

    def payload_bits(self, payload: bytes) -> np.ndarray:
        return np.unpackbits(np.frombuffer(payload, np.uint8))[: self.bits]

    def embedder(self, payload: bytes, width: int, height: int, fps: float, *,
                 strength: float = 1.0) -> "_Embedder":
        if strength not in self.strengths:  # the library's decoders assume its own embedding strength
            raise ValueError(f"{self.name} embeds at strength 1 only")
        return _Embedder(self.name, self.payload_bits(payload) ^ self._pad)

    def detector(self, width: int, height: int, fps: float) -> "_Detector":
        step = max(1, int(round(fps / (1 if self.name == "rivaGan" else 4))))
        return _Detector(self.name, self._pad, step)


class _Embedder:
    def __init__(self, algorithm: str, bits: np.ndarray) -> None:
        from imwatermark import WatermarkEncoder

        self._algorithm = algorithm
        self._encoder = WatermarkEncoder()
        self._encoder.set_watermark("bits", [int(b) for b in bits])

    def apply(self, frame: Frame, index: int) -> None:
        marked = self._encoder.encode(_bgr(frame), self._algorithm)
        frame.buffer[...] = Frame.from_rgb(np.ascontiguousarray(marked[:, :, ::-1])).buffer


class _Detector:
    def __init__(self, algorithm: str, pad: np.ndarray, step: int) -> None:
        from imwatermark import WatermarkDecoder

        self._algorithm = algorithm
        self._decoder = WatermarkDecoder("bits", len(pad))
        self._pad = pad
        self._step = step
        self._votes: list[np.ndarray] = []
        self.bits: np.ndarray | None = None  # the voted payload bits, for bit accuracy

    def wants(self, index: int) -> bool:
        return index % self._step == 0

    def add(self, frame: Frame, index: int) -> None:
        if frame.width * frame.height < 256 * 256:
            return
        bits = np.asarray(self._decoder.decode(_bgr(frame), self._algorithm), dtype=np.float64)
        self._votes.append((bits > 0.5).astype(np.uint8))

    def result(self) -> Detection:
        if not self._votes:
            return Detection(False, None, None, 0, self._algorithm, note="frames too small for the library")
        majority = (np.stack(self._votes).mean(axis=0) >= 0.5).astype(np.uint8)
        self.bits = majority ^ self._pad
        payload = np.packbits(self.bits).tobytes()
        return Detection(True, payload, None, len(self._votes), self._algorithm, note="no presence test")
