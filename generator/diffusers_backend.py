"""Any local diffusers text-to-video (or image-to-video) pipeline directory.

Loaded with `DiffusionPipeline.from_pretrained(path, local_files_only=True)`: nothing is ever downloaded. Pipelines
differ in their call arguments (frame counts that must be 4k+1 or 8k+1, `frame_rate`, `image`), so the call is
built from the pipeline's own signature.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from generator.base import GeneratedVideo, GeneratorError, ModelInfo, ProgressCallback, VideoRequest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: local_files_only below already forbids downloads


def quiet_libraries() -> None:
    """diffusers and transformers draw progress bars on stderr while loading; ours are the ones users see."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()

_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "fp32": "float32",
           "fp16": "float16", "bf16": "bfloat16"}


def hash_model_dir(path: Path) -> str:
    """SHA-256 over every file's relative path and content, in sorted order (stable across machines)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


class DiffusersGenerator:
    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        steps: int | None = None,
        guidance: float | None = None,
        backend: str = "diffusers",
        version: str | None = None,
    ) -> None:
        if not (path / "model_index.json").is_file():
            raise GeneratorError(
                f"{path} is not a diffusers pipeline directory (no model_index.json).",
                hint="Point HALLMARK_GENERATOR_PATH at a local copy saved with `save_pretrained` "
                "(e.g. a local CogVideoX, LTX-Video or Wan checkpoint).",
            )
        if dtype not in _DTYPES:
            raise GeneratorError(f"Unknown dtype {dtype!r}.", hint=f"Use one of {sorted(set(_DTYPES))}.")
        self.path = path
        self.device = device
        self.dtype = _DTYPES[dtype]
        self.steps = steps
        self.guidance = guidance
        self._pipe: Any = None
        self._lock = threading.Lock()  # one pipeline per process; torch already uses every core per call
        index = _read_json(path / "model_index.json")
        self.info = ModelInfo(
            backend=backend,
            name=f"{index.get('_class_name', 'DiffusionPipeline')}:{path.name}",
            version=version or str(index.get("_diffusers_version", "unknown")),
            sha256=hash_model_dir(path),
        )

    def _pipeline(self) -> Any:
        if self._pipe is None:
            import torch
            from diffusers import DiffusionPipeline

            quiet_libraries()
            try:
                pipe = DiffusionPipeline.from_pretrained(
                    str(self.path), dtype=getattr(torch, self.dtype), local_files_only=True
                )
            except Exception as exc:  # diffusers raises many types here; all mean "this dir cannot be loaded"
                raise GeneratorError(
                    f"Could not load the pipeline in {self.path}: {exc}",
                    hint="Check that the directory is complete and matches the installed diffusers version.",
                ) from exc
            pipe.to(self.device)
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe
        return self._pipe

    @property
    def supports_reference_image(self) -> bool:
        return "image" in inspect.signature(self._pipeline().__call__).parameters

    def generate(self, request: VideoRequest, progress: ProgressCallback) -> GeneratedVideo:
        import torch
        from PIL import Image

        with self._lock:
            pipe = self._pipeline()
            params = inspect.signature(pipe.__call__).parameters
            steps = self.steps or _default(params, "num_inference_steps", 25)
            kwargs: dict[str, Any] = {
                "prompt": request.prompt,
                "height": request.height,
                "width": request.width,
                "num_inference_steps": steps,
                "generator": torch.Generator(device="cpu").manual_seed(request.seed),
                "output_type": "np",
            }
            if "num_frames" in params:
                kwargs["num_frames"] = _valid_frame_count(pipe, request.frames)
            if self.guidance is not None and "guidance_scale" in params:
                kwargs["guidance_scale"] = self.guidance
            if request.negative_prompt and "negative_prompt" in params:
                kwargs["negative_prompt"] = request.negative_prompt
            for name in ("frame_rate", "fps"):
                if name in params:
                    kwargs[name] = request.fps if name == "frame_rate" else int(round(request.fps))
            if request.reference_image is not None:
                if "image" not in params:
                    raise GeneratorError(
                        f"The pipeline {self.info.name} does not take a reference image.",
                        hint="Use an image-to-video pipeline, or send the request without a reference image.",
                        status=422,
                    )
                kwargs["image"] = Image.fromarray(request.reference_image)
            if "callback_on_step_end" in params:
                def on_step_end(_pipe: Any, step: int, _timestep: Any, callback_kwargs: dict) -> dict:
                    progress(min(1.0, (step + 1) / steps) * 0.9)  # the last 10 % is the VAE decode
                    return callback_kwargs

                kwargs["callback_on_step_end"] = on_step_end
            try:
                with torch.inference_mode():
                    output = pipe(**kwargs)
            except GeneratorError:
                raise
            except Exception as exc:
                raise GeneratorError(f"The pipeline failed: {exc}") from exc
        frames = _to_uint8_frames(output.frames[0])[: request.frames]
        audio = getattr(output, "audio", None)
        progress(1.0)
        if audio is not None:
            audio = np.asarray(audio, dtype=np.float32).reshape(-1, np.asarray(audio).shape[-1])
        return GeneratedVideo(frames=frames, fps=request.fps, audio=audio,
                              sample_rate=getattr(output, "sample_rate", None) if audio is not None else None)


def _valid_frame_count(pipe: Any, wanted: int) -> int:
    """Smallest count ≥ wanted that the VAE's temporal compression accepts (Wan 4k+1, LTX 8k+1); trimmed later."""
    ratio = int(getattr(pipe, "vae_scale_factor_temporal", 1) or 1)
    if ratio <= 1:
        return wanted
    return ((max(wanted, 1) - 1 + ratio - 1) // ratio) * ratio + 1


def _default(params: Any, name: str, fallback: int) -> int:
    if name in params and isinstance(params[name].default, int):
        return params[name].default
    return fallback


def _to_uint8_frames(frames: Any) -> np.ndarray:
    array = np.asarray(frames)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise GeneratorError(f"The pipeline returned frames of shape {array.shape}, expected (T, H, W, 3).")
    return np.ascontiguousarray(array)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeneratorError(f"Cannot read {path}: {exc}") from exc
