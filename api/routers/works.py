"""Copyright works and their licences. A rights holder manages its own works; an admin manages all."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api import works as service
from api.deps import AccountDep, HallmarkDep
from api.problems import ApiProblem
from api.works import LicenceCreate, LicenceView, WorkCreate, WorkUpdate, WorkView
from registry import Works

router = APIRouter(prefix="/v1/works", tags=["works"])


@router.post("", status_code=201, response_model=WorkView)
def create_work(body: WorkCreate, hm: HallmarkDep, account: AccountDep) -> WorkView:
    """Register a work: name, aliases (any language), descriptions (matched against paraphrases), images
    (base64; matched by perceptual hash), mode `opt_out` (blocked for everyone) or `licensed` (allowed for the
    listed licensees only). Admins may register on behalf of a rights holder (`holder`)."""
    return service.register_work(hm, account, body)


@router.get("", response_model=list[WorkView])
def list_works(hm: HallmarkDep, account: AccountDep, holder: str | None = None, limit: int = 100,
               offset: int = 0) -> list[WorkView]:
    """Your works (admins: everyone's, or one holder's with ?holder=NAME)."""
    return service.list_works(hm, account, holder=holder, limit=max(1, min(limit, 1000)), offset=max(0, offset))


@router.get("/{work_id}", response_model=WorkView)
def get_work(work_id: str, hm: HallmarkDep, account: AccountDep) -> WorkView:
    with hm.db.session() as session:
        return service.work_view(session, service.owned_work(session, account, work_id))


@router.patch("/{work_id}", response_model=WorkView)
def update_work(work_id: str, body: WorkUpdate, hm: HallmarkDep, account: AccountDep) -> WorkView:
    """Change the mode, kind, validity, rights claim or semantic threshold; add aliases or descriptions."""
    return service.update_work(hm, account, work_id, body)


@router.delete("/{work_id}", status_code=204)
def delete_work(work_id: str, hm: HallmarkDep, account: AccountDep) -> Response:
    """Remove a work (it stops being enforced at once; its licences are revoked)."""
    service.remove_work(hm, account, work_id)
    return Response(status_code=204)


@router.post("/{work_id}/images", response_model=WorkView,
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
async def add_image(work_id: str, request: Request, hm: HallmarkDep, account: AccountDep) -> WorkView:
    """Add reference images (multipart field `file`, repeatable); only their perceptual hashes are kept."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise ApiProblem(415, "unsupported_media", "Send the images as multipart/form-data (field `file`).",
                         hint=f"curl -F file=@poster.png .../v1/works/{work_id}/images")
    # Whose work it is is checked before the body is read: parsing the form spools up to 200 MiB and hashing
    # decodes every image, work a caller who may not manage this work must not get the server to do.
    await run_in_threadpool(service.require_owned, hm, account, work_id)
    form = await request.form(max_files=service.MAX_IMAGES, max_fields=service.MAX_IMAGES)
    images: list[tuple[str, bytes]] = []
    try:
        for upload in form.getlist("file"):
            if isinstance(upload, UploadFile):
                data = await upload.read(service.MAX_IMAGE_BYTES + 1)
                images.append((upload.filename or "image", data))
    finally:
        await form.close()
    if not images:
        raise ApiProblem(422, "invalid_input", "The multipart body has no file field named `file`.")
    return await run_in_threadpool(service.add_images, hm, account, work_id, images)


@router.get("/{work_id}/licences", response_model=list[LicenceView])
def list_licences(work_id: str, hm: HallmarkDep, account: AccountDep) -> list[LicenceView]:
    with hm.db.session() as session:
        work = service.owned_work(session, account, work_id)
        return [service.licence_view(session, l) for l in Works(session).licences(work.id)]


@router.post("/{work_id}/licences", status_code=201, response_model=LicenceView)
def grant_licence(work_id: str, body: LicenceCreate, hm: HallmarkDep, account: AccountDep) -> LicenceView:
    """License a `licensed` work to an account, optionally non-commercial only and within dates."""
    return service.grant_licence(hm, account, work_id, body)


@router.delete("/{work_id}/licences/{licence_id}", status_code=204)
def revoke_licence(work_id: str, licence_id: str, hm: HallmarkDep, account: AccountDep) -> Response:
    service.revoke_licence(hm, account, work_id, licence_id)
    return Response(status_code=204)
