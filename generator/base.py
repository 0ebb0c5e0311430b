"""The one protocol every video generation backend implements. Knows nothing of guard, registry or api."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

ProgressCallback = Callable[[float], None]  # fraction done, 0.0 .. 1.0


@dataclass(frozen=True)
class VideoRequest:
    prompt: str
    frames: int
    fps: float
    width: int
    height: int
    seed: int
    negative_prompt: str | None = None
    reference_image: np.ndarray | None = field(default=None, repr=False)  # RGB uint8 (H, W, 3)


@dataclass(frozen=True)
class GeneratedVideo:
    frames: np.ndarray  # RGB uint8, shape (T, H, W, 3)
    fps: float
    audio: np.ndarray | None = None  # float32 in [-1, 1], shape (channels, samples)
    sample_rate: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What made a clip; goes into the C2PA softwareAgent and the generation record."""

    backend: str
    name: str
    version: str
    sha256: str | None = None  # content hash of the model files, where known


@runtime_checkable
class VideoGenerator(Protocol):
    info: ModelInfo
    supports_reference_image: bool

    def generate(self, request: VideoRequest, progress: ProgressCallback) -> GeneratedVideo: ...


class GeneratorError(Exception):
    """A backend could not load or run. `hint` says what to do; the API shows both."""

    code = "generator_error"
    status = 500

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if status is not None:
            self.status = status

    def diagnostics(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"
