"""Verify a clip's origin: anyone may upload (no key needed); a key only widens what the record shows."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import PUBLIC_RATE_LIMIT, HallmarkDep, OptionalAccountDep
from api.uploads import receive_upload, temp_upload_path
from api.verification import report_body, verify_file
from api.verify_slots import verify_slots

router = APIRouter(tags=["verify"], dependencies=[PUBLIC_RATE_LIMIT])

@router.post(
    "/v1/verify",
    openapi_extra={"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string",
                                                                                    "format": "binary"}}}},
        "video/mp4": {"schema": {"type": "string", "format": "binary"}},
    }}},
    responses={413: {"description": "Larger than HALLMARK_MAX_UPLOAD_BYTES."},
               422: {"description": "Empty, truncated or not a video."},
               503: {"description": "Every verification slot stayed busy; retry after Retry-After seconds."}},
)
async def verify(request: Request, hm: HallmarkDep, viewer: OptionalAccountDep) -> dict:
    """Upload a video (multipart field `file`, or the raw bytes with a video Content-Type). Returns the C2PA
    report, the watermark verdict, the generation it leads to, the original manifest recovered through the
    watermark when the file's own is missing or broken, and a one-sentence verdict. MP4, MOV, M4V, AVI, GIF, PNG
    and JPEG are checked for C2PA; WebM and MKV get a watermark-only verification (with a note).

    A few verifications run at once; an upload that arrives while they are busy waits for its turn (up to 30 s)."""
    with temp_upload_path(hm.paths.tmp) as target:
        # The upload is received first, outside the slots: a slow sender must not hold one.
        upload = await receive_upload(request, target, hm.settings.max_upload_bytes)
        async with verify_slots(request.app).hold():
            # The thread is not abandoned if the caller goes away: the slot is freed when the work is done.
            report = await run_in_threadpool(verify_file, hm, upload.path, viewer)
        return report_body(report)
