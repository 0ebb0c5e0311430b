"""Cameos: register with a live challenge, verify, permissions, revoke, delete (templates erased), appearances,
withdraw. An owner manages their own cameos; admins all. Face templates are never returned."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api import cameos as service
from api.cameos import (AppearanceView, CameoUpdate, CameoView, ChallengeView, RegistrationRejected,
                        TooManyChallenges)
from api.deps import AccountDep, HallmarkDep
from api.problems import ApiProblem
from api.request_body import RequestBody
from api.uploads import receive_upload, temp_upload_path
from registry import Visibility

router = APIRouter(prefix="/v1/cameos", tags=["cameos"])

_FAILED = {422: {"description": "Verification failed; `failures` lists every reason (code, message, details)."}}
_LIMITED = {429: {"description": "Too many challenges for this cameo or account in the last hour; `Retry-After` "
                                 "says when the next one can be issued."}}


class CameoCreate(RequestBody):
    handle: str = Field(..., pattern=service.HANDLE_PATTERN, description="The @handle others mention.")
    visibility: Visibility = Visibility.only_me


class Registration(BaseModel):
    cameo: CameoView
    challenge: ChallengeView


class Withdrawal(BaseModel):
    generation_id: str
    status: str


def _rejected(exc: RegistrationRejected) -> ApiProblem:
    return ApiProblem(422, exc.code, exc.message, hint=exc.hint,
                      failures=[failure.as_dict() for failure in exc.failures])


def _limited(exc: TooManyChallenges) -> ApiProblem:
    return ApiProblem(429, exc.code, exc.message, hint=exc.hint, headers={"Retry-After": str(exc.retry_after)},
                      retry_after=exc.retry_after)


@router.post("", status_code=201, response_model=Registration, responses=_LIMITED)
def register(body: CameoCreate, hm: HallmarkDep, account: AccountDep) -> Registration:
    """Start a registration: the cameo is `pending` until a video answering the returned challenge (a random order
    of head movements, valid a few minutes, answerable once) is verified. An account gets a limited number of
    challenges an hour (registrations included)."""
    try:
        cameo, challenge = service.start_registration(hm, account, body.handle, body.visibility)
    except TooManyChallenges as exc:
        raise _limited(exc) from exc
    return Registration(cameo=cameo, challenge=challenge)


@router.get("", response_model=list[CameoView])
def list_cameos(hm: HallmarkDep, account: AccountDep, all: bool = False) -> list[CameoView]:  # noqa: A002
    """Your cameos (admins: `?all=true` for everyone's)."""
    return service.list_cameos(hm, account, everyone=all)


@router.get("/{cameo_id}", response_model=CameoView)
def get_cameo(cameo_id: str, hm: HallmarkDep, account: AccountDep) -> CameoView:
    return service.get_cameo(hm, account, cameo_id)


@router.post("/{cameo_id}/challenge", status_code=201, response_model=ChallengeView, responses=_LIMITED)
def new_challenge(cameo_id: str, hm: HallmarkDep, account: AccountDep) -> ChallengeView:
    """A fresh challenge for a pending cameo (each challenge allows one upload; older ones stop being valid).
    Limited per cameo and per account per hour: 429 with Retry-After beyond."""
    try:
        return service.reissue_challenge(hm, account, cameo_id)
    except TooManyChallenges as exc:
        raise _limited(exc) from exc


@router.post(
    "/{cameo_id}/verification", response_model=CameoView, responses=_FAILED,
    openapi_extra={"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string",
                                                                                    "format": "binary"}}}},
        "video/mp4": {"schema": {"type": "string", "format": "binary"}},
    }}},
)
async def verify(cameo_id: str, request: Request, hm: HallmarkDep, account: AccountDep,
                 challenge_id: str | None = None) -> CameoView:
    """Upload the video answering the challenge (multipart field `file`, or the raw bytes with a video
    Content-Type). Verified when one face is in >= 90 % of frames, the same person throughout, the head moves in
    the challenge's order, the challenge is live and unused, and the face matches nobody else's cameo and no
    protected person. Otherwise 422 with every failure; nothing is stored."""
    with temp_upload_path(hm.paths.tmp) as target:
        upload = await receive_upload(request, target, hm.settings.max_upload_bytes)
        try:
            return await run_in_threadpool(service.verify_registration, hm, account, cameo_id, upload.path,
                                           challenge_id)
        except RegistrationRejected as exc:
            raise _rejected(exc) from exc


@router.patch("/{cameo_id}", response_model=CameoView)
def update(cameo_id: str, body: CameoUpdate, hm: HallmarkDep, account: AccountDep) -> CameoView:
    """Change visibility (only_me, approved, everyone), the approved accounts, content restrictions or expiry."""
    return service.update_permissions(hm, account, cameo_id, body)


@router.post("/{cameo_id}/revoke", response_model=CameoView)
def revoke(cameo_id: str, hm: HallmarkDep, account: AccountDep) -> CameoView:
    """Revoke at once: new requests are denied, and queued or running generations are withheld at release."""
    return service.revoke(hm, account, cameo_id)


@router.delete("/{cameo_id}", status_code=204)
def delete(cameo_id: str, hm: HallmarkDep, account: AccountDep) -> Response:
    """Delete: the face templates are erased and the cameo can no longer be used; the handle stays reserved."""
    service.delete(hm, account, cameo_id)
    return Response(status_code=204)


@router.get("/{cameo_id}/appearances", response_model=list[AppearanceView])
def appearances(cameo_id: str, hm: HallmarkDep, account: AccountDep) -> list[AppearanceView]:
    """Every generation that used or tried to use the cameo (allowed, denied, withheld), newest first."""
    return service.appearances(hm, account, cameo_id)


@router.post("/{cameo_id}/appearances/{generation_id}/withdraw", response_model=Withdrawal)
def withdraw(cameo_id: str, generation_id: str, hm: HallmarkDep, account: AccountDep) -> Withdrawal:
    """Withdraw a released clip the cameo appears in; verify then reports it as withdrawn."""
    generation = service.withdraw(hm, account, cameo_id, generation_id)
    return Withdrawal(generation_id=generation.id, status=generation.status)
