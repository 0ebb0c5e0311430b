"""Pydantic models at the edges (HTTP bodies, CLI JSON). Limits that depend on the settings are checked in
`check_limits`, so the HTTP API and the CLI refuse exactly the same requests with the same words."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.request_body import RequestBody
from api.settings import Settings
from guard.errors import InvalidInput
from registry import Generation


class GenerationCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., description="What to generate. Mention a cameo as @handle.")
    cameos: list[str] = Field(default_factory=list, max_length=8, description="Cameo handles to use.")
    frames: int = Field(24, description="Number of frames.")
    fps: float = Field(12.0, description="Frames per second.")
    width: int = Field(256, description="Width in pixels, a multiple of 16.")
    height: int = Field(256, description="Height in pixels, a multiple of 16.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Random seed; random when omitted.")
    negative_prompt: str | None = Field(None, max_length=2000)
    commercial: bool = Field(False, description="Commercial use (a non-commercial licence does not cover it).")
    reference_image_base64: str | None = Field(
        None, description="A reference image (PNG, JPEG, WebP; base64) for image-to-video backends. Faces on it are "
                          "matched against every cameo and protected person, and works' images are matched too.")

    def with_seed(self) -> "GenerationCreate":
        return self if self.seed is not None else self.model_copy(update={"seed": secrets.randbelow(2**32)})


def check_limits(request: GenerationCreate, settings: Settings) -> None:
    """Raise InvalidInput naming every field that is out of bounds, each with its allowed range."""
    prompt = request.prompt.strip()
    if not prompt:
        raise InvalidInput("The prompt is empty.", hint="Describe the video you want.")
    if len(prompt) > settings.max_prompt_chars:
        raise InvalidInput(f"The prompt is {len(prompt)} characters long; the limit is "
                           f"{settings.max_prompt_chars}.", hint="Shorten the prompt.")
    # Every bad number at once, so that a client fixes its request in one round trip, not one field per try.
    problems = []
    if not 1 <= request.frames <= settings.max_frames:
        problems.append(f"frames must be between 1 and {settings.max_frames}; got {request.frames}")
    if not settings.min_fps <= request.fps <= settings.max_fps:
        problems.append(f"fps must be between {settings.min_fps:g} and {settings.max_fps:g}; got {request.fps:g}")
    for name, value in (("width", request.width), ("height", request.height)):
        if not settings.min_side <= value <= settings.max_side or value % 16:
            problems.append(f"{name} must be a multiple of 16 between {settings.min_side} and "
                            f"{settings.max_side}; got {value}")
    if problems:
        raise InvalidInput("; ".join(problems) + ".",
                           hint="Stay within these ranges; `hallmark config` shows the limits this server uses.")
    if request.frames / request.fps < 0.5:
        raise InvalidInput(f"The clip would last {request.frames / request.fps:.2f} s; the minimum is 0.5 s "
                           "(the invisible watermark needs it).", hint="Ask for more frames or a lower fps.")


class GenerationView(BaseModel):
    id: str
    status: str
    progress: float
    decision: dict[str, Any]
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    error: str | None
    backend: str
    model: str
    watermark_payload: str | None
    manifest_label: str | None
    video_url: str | None

    @classmethod
    def of(cls, generation: Generation) -> "GenerationView":
        from registry.clock import as_utc

        return cls(
            id=generation.id, status=generation.status, progress=round(generation.progress, 1),
            decision=generation.decision, params=generation.params,
            created_at=as_utc(generation.created_at), updated_at=as_utc(generation.updated_at),
            completed_at=as_utc(generation.completed_at), error=generation.error, backend=generation.backend,
            model=generation.model_name, watermark_payload=generation.watermark_payload,
            manifest_label=generation.manifest_label,
            video_url=f"/v1/generations/{generation.id}/video" if generation.status == "completed" else None,
        )
