"""The dry run: evaluate the whole gate for a request without generating anything."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AccountDep, HallmarkDep
from api.gate import dry_run
from api.request_body import RequestBody
from api.works import decode_base64

router = APIRouter(prefix="/v1/gate", tags=["gate"])


class GateCheck(RequestBody):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., description="The prompt to check; mention cameos as @handle.")
    negative_prompt: str | None = Field(None, max_length=2000, description="As a generation request would send it.")
    cameos: list[str] = Field(default_factory=list, max_length=8)
    commercial: bool = False
    reference_image_base64: str | None = Field(None, description="A reference image, base64-encoded.")
    as_account: str | None = Field(None, description="Check as another account (admins only).")


class GateAnswer(BaseModel):
    allowed: bool
    reasons: list[dict[str, Any]]
    obligations: list[dict[str, Any]]
    policy_version: str
    cameo_ids: list[str]


@router.post("/check", response_model=GateAnswer)
def check(body: GateCheck, hm: HallmarkDep, account: AccountDep) -> GateAnswer:
    """Answers 200 with `allowed`, every reason (`code`, `subject`, `message`, `evidence` with the matched span
    and score), the obligations and the policy version, exactly as a generation request would be decided. A face
    on the reference image that is someone's cameo the caller may not use is reported without naming them; the
    attempt is recorded as a denied request among that cameo's appearances, for its owner to see."""
    image = decode_base64("reference image", body.reference_image_base64) if body.reference_image_base64 else None
    decision = dry_run(hm, account, body.prompt, cameos=body.cameos, commercial=body.commercial,
                       reference_image=image, as_account=body.as_account, negative_prompt=body.negative_prompt)
    return GateAnswer(**decision.as_dict())
