"""The FastAPI application: routers per resource, problem+json errors, and the in-process generation workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api import problems
from api.audit import record_policy_loaded
from api.body_limit import MAX_JSON_BYTES, BodyLimit, Limit
from api.context import Hallmark
from api.generation import HALLMARK_VERSION
from api.jobs import WorkerPool
from api.request_body import storable_url
from api.routers import accounts, audit, cameos, gate, generations, health, softbinding, verify, works
from api.settings import Settings, load_settings
from api.uploads import MULTIPART_ALLOWANCE
from api.works import MAX_IMAGE_BYTES, MAX_IMAGES
from guard.gate.policy import require_passing_cases


def create_app(settings: Settings | None = None, *, workers: int | None = None) -> FastAPI:
    settings = settings or load_settings()
    hm = Hallmark(settings)
    hm.db.require_schema()  # refuse to start on a database `hallmark init` has not prepared
    # Refuse to start on invalid policies (the error names the file and line) or on policies that fail their own
    # cases (policies/cases.toml, as `hallmark policy check` runs them), before they are logged as in force.
    require_passing_cases(hm.policy)
    hm.watermark  # the watermark keys, retired ones included: a missing or bad key file is said now, not per request
    record_policy_loaded(hm)
    pool = WorkerPool(hm, settings.workers if workers is None else workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.start()
        try:
            yield
        finally:
            pool.stop()
            hm.close()

    app = FastAPI(
        title="Hallmark",
        version=HALLMARK_VERSION,
        description="Provenance, watermarking and consent-gating for AI video generation.",
        lifespan=lifespan,
        dependencies=[Depends(storable_url)],
    )
    app.state.hallmark = hm
    app.state.workers = pool
    problems.install(app)
    for router in (health.router, generations.router, verify.router, accounts.router, cameos.router,
                   softbinding.router, works.router, gate.router, audit.router):
        app.include_router(router)
    # Every request body's limit, in one place: a small JSON body by default, HALLMARK_MAX_REQUEST_BYTES where the
    # JSON may carry base64 images, HALLMARK_MAX_UPLOAD_BYTES for video uploads.
    upload = Limit(settings.max_upload_bytes, framing=MULTIPART_ALLOWANCE)
    app.add_middleware(BodyLimit, default=MAX_JSON_BYTES, limits={
        generations.create_generation: settings.max_request_bytes,  # reference_image_base64
        gate.check: settings.max_request_bytes,  # reference_image_base64
        works.create_work: settings.max_request_bytes,  # images[].data_base64
        verify.verify: upload,
        cameos.verify: upload,
        softbinding.matches_by_content: upload,
        works.add_image: Limit(MAX_IMAGES * MAX_IMAGE_BYTES, framing=MULTIPART_ALLOWANCE),
        softbinding.matches_by_large_binding: softbinding.MAX_QUERY_BODY,
    })
    return app
