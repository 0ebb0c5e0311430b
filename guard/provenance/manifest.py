"""The C2PA manifest Hallmark signs into every released clip (a plain dict in c2pa-python's manifest JSON form).

What goes in, and why:
- `c2pa.actions.v2`: `c2pa.created` with digitalSourceType trainedAlgorithmicMedia (the IPTC term C2PA uses for
  generative AI output) and the generator as softwareAgent (backend, model, version, hash of the model files);
  `c2pa.watermarked`, which the spec only allows next to a soft-binding assertion;
- `c2pa.soft-binding`: the invisible watermark's algorithm and payload (base64, as the Soft Binding Resolution API
  takes it) over the whole timespan, so a stripped clip can be traced back to this manifest (C2PA "durable
  content credentials");
- `cawg.training-mining`: the operator's training and data-mining choices (default: all notAllowed);
- a reference image, when the request had one, as an ingredient with relationship `inputTo`, linked from the
  `c2pa.created` action (no thumbnail: a reference image may show a person, and the manifest is public);
- `org.hallmark.gate`: the gate's summary: generation id, policy version, cameos used with consent, the time of
  generation. No prompt text and no biometric data unless the operator opted in to publishing the prompt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guard.errors import InvalidInput

GENERATIVE_AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
HALLMARK_ASSERTION = "org.hallmark.gate"
SOFT_BINDING = "c2pa.soft-binding"
TRAINING_MINING = "cawg.training-mining"
TRAINING_MINING_KEYS = ("cawg.ai_training", "cawg.ai_generative_training", "cawg.data_mining")
TRAINING_MINING_USES = ("allowed", "notAllowed", "constrained")
REFERENCE_INGREDIENT_ID = "reference-image"
REFERENCE_IMAGE_FORMATS = {"image/png", "image/jpeg", "image/webp"}


def soft_binding_value(payload: bytes) -> str:
    """The soft-binding `value` for a watermark payload: base64, the encoding the resolution API queries with."""
    return base64.b64encode(payload).decode("ascii")


def payload_from_soft_binding_value(value: str) -> bytes:
    """The payload in a soft-binding value (standard or URL-safe base64). Raises InvalidInput when it is not."""
    text = value.strip().replace(" ", "+")  # an unescaped "+" in a URL query arrives as a space
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if ("-" in text or "_" in text)
                                else None, validate=True)
    except (binascii.Error, ValueError) as exc:
        # Quoted in part only: the value comes from whoever asks, and an error must not echo a large one back.
        shown = repr(value) if len(value) <= 40 else f"{value[:32]!r}... ({len(value)} characters)"
        raise InvalidInput(f"The soft-binding value {shown} is not base64.",
                           hint="Give the watermark payload base64-encoded, e.g. ASNFZ4mrze8=.") from exc


@dataclass(frozen=True)
class ReferenceImage:
    """An input image the clip was generated from; goes into the manifest as an `inputTo` ingredient."""

    data: bytes = field(repr=False)
    format: str = "image/png"
    title: str = "reference image"

    def __post_init__(self) -> None:
        if self.format not in REFERENCE_IMAGE_FORMATS:
            raise InvalidInput(f"A reference image must be one of {sorted(REFERENCE_IMAGE_FORMATS)}; "
                               f"got {self.format!r}.")
        if not self.data:
            raise InvalidInput("The reference image is empty.")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def default_training_mining() -> dict[str, str]:
    return {key: "notAllowed" for key in TRAINING_MINING_KEYS}


@dataclass(frozen=True)
class ManifestFacts:
    generation_id: str
    operator: str
    claim_generator_version: str
    model_backend: str
    model_name: str
    model_version: str
    model_sha256: str | None
    watermark_alg: str
    watermark_payload_hex: str
    duration_ms: int
    policy_version: str
    cameo_ids: list[str] = field(default_factory=list)
    # CAWG entry -> allowed | notAllowed | constrained; empty: no training-mining assertion at all
    training_mining: Mapping[str, str] = field(default_factory=default_training_mining)
    prompt: str | None = None  # only when the operator opted in to publishing prompts
    created_at: str | None = None  # ISO 8601 time of generation (self-asserted; a TSA gives a trusted one)
    reference_image: ReferenceImage | None = None


def build_manifest(facts: ManifestFacts) -> dict[str, Any]:
    """The manifest definition. A reference image is added to the Builder as an ingredient by `sign_video`
    (`ingredients_for`); the `c2pa.created` action already points at it by its ingredient id."""
    for key, use in facts.training_mining.items():
        if use not in TRAINING_MINING_USES:
            raise InvalidInput(f"Training/mining use for {key!r} must be one of {TRAINING_MINING_USES}; "
                               f"got {use!r}.")
    software_agent: dict[str, Any] = {"name": facts.model_name, "version": facts.model_version,
                                      "backend": facts.model_backend}
    if facts.model_sha256:
        software_agent["model_sha256"] = facts.model_sha256
    gate: dict[str, Any] = {
        "generation_id": facts.generation_id,
        "operator": facts.operator,
        "policy_version": facts.policy_version,
        "cameo_ids": list(facts.cameo_ids),
    }
    if facts.created_at:
        gate["created_at"] = facts.created_at
    if facts.prompt is not None:
        gate["prompt"] = facts.prompt
    created: dict[str, Any] = {
        "action": "c2pa.created",
        "digitalSourceType": GENERATIVE_AI,
        "softwareAgent": software_agent,
        "description": f"Generated by {facts.operator} through the Hallmark gateway",
    }
    if facts.reference_image is not None:
        created["parameters"] = {"ingredientIds": [REFERENCE_INGREDIENT_ID]}
        gate["reference_image_sha256"] = facts.reference_image.sha256
    payload = bytes.fromhex(facts.watermark_payload_hex)
    assertions: list[dict[str, Any]] = [
        {
            "label": "c2pa.actions.v2",
            "data": {
                "actions": [
                    created,
                    {
                        "action": "c2pa.watermarked",
                        "softwareAgent": {"name": "hallmark", "version": facts.claim_generator_version},
                        "parameters": {"alg": facts.watermark_alg},
                    },
                ]
            },
        },
        {
            "label": SOFT_BINDING,
            "data": {
                "alg": facts.watermark_alg,
                "blocks": [{"scope": {"timespan": {"start": 0, "end": facts.duration_ms}},
                            "value": soft_binding_value(payload)}],
            },
        },
        {"label": HALLMARK_ASSERTION, "data": gate},
    ]
    if facts.training_mining:
        assertions.append({
            "label": TRAINING_MINING,
            "data": {"entries": {key: {"use": use} for key, use in facts.training_mining.items()}},
        })
    return {
        "claim_generator_info": [{"name": "hallmark", "version": facts.claim_generator_version}],
        "title": f"{facts.generation_id}.mp4",
        "format": "video/mp4",
        "assertions": assertions,
    }


@dataclass(frozen=True)
class IngredientSource:
    """An ingredient for c2pa's Builder: its JSON definition and the bytes it is read from."""

    definition: dict[str, Any]
    format: str
    data: bytes = field(repr=False)


def ingredients_for(facts: ManifestFacts) -> list[IngredientSource]:
    if facts.reference_image is None:
        return []
    image = facts.reference_image
    return [IngredientSource({"title": image.title, "relationship": "inputTo", "label": REFERENCE_INGREDIENT_ID},
                             image.format, image.data)]
