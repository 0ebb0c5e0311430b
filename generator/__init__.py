"""Video generation backends behind one protocol (`VideoGenerator`). Imports no other package of the project."""

from __future__ import annotations

import importlib
from pathlib import Path

from generator.base import GeneratedVideo, GeneratorError, ModelInfo, ProgressCallback, VideoGenerator, VideoRequest

__all__ = ["GeneratedVideo", "GeneratorError", "ModelInfo", "ProgressCallback", "VideoGenerator", "VideoRequest",
           "load_generator"]


def load_generator(
    name: str,
    *,
    tiny_dir: Path,
    path: Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    steps: int | None = None,
    guidance: float | None = None,
) -> VideoGenerator:
    """`tiny` (built-in), `diffusers` (a local pipeline dir), or `package.module:Class` for your own backend
    (constructed with no arguments; it must implement `VideoGenerator`)."""
    if name == "tiny":
        from generator.tiny import tiny_generator

        return tiny_generator(tiny_dir, steps=steps)
    if name == "diffusers":
        from generator.diffusers_backend import DiffusersGenerator

        if path is None:
            raise GeneratorError("The diffusers backend needs a pipeline directory.",
                                 hint="Set HALLMARK_GENERATOR_PATH to a local diffusers pipeline directory.")
        return DiffusersGenerator(path, device=device, dtype=dtype, steps=steps, guidance=guidance)
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        try:
            backend = getattr(importlib.import_module(module_name), class_name)()
        except (ImportError, AttributeError) as exc:
            raise GeneratorError(f"Cannot load the generator {name!r}: {exc}") from exc
        if not isinstance(backend, VideoGenerator):
            raise GeneratorError(f"{name} does not implement generator.VideoGenerator.")
        return backend
    raise GeneratorError(f"Unknown generator {name!r}.",
                         hint="Use 'tiny', 'diffusers' or 'package.module:Class'.")
