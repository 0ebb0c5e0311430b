"""Errors as RFC 9457 problem details (`application/problem+json`), for every error the API can answer with.

Every project error carries `code`, `message`, `hint` and `status` (guard.errors, registry.errors,
generator.GeneratorError); they become `type` (urn:hallmark:problem:<code>), `detail`, `hint` and `status`."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from generator import GeneratorError
from guard.errors import HallmarkError
from registry.errors import RegistryError

log = logging.getLogger("hallmark.api")
PROBLEM = "application/problem+json"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM


def problem(status: int, code: str, detail: str, *, hint: str | None = None, headers: dict[str, str] | None = None,
            **extensions: Any) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": f"urn:hallmark:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if hint:
        body["hint"] = hint
    body.update(extensions)
    return ProblemResponse(body, status_code=status, headers=headers)


# What a client whose body was cut off (api/body_limit.py) can do about it.
BODY_LIMIT_HINT = ("Send less than the limit named. JSON bodies with base64 images are capped by "
                   "HALLMARK_MAX_REQUEST_BYTES (send a work's images as multipart to /v1/works/{id}/images instead), "
                   "video uploads by HALLMARK_MAX_UPLOAD_BYTES, other JSON at 1 MiB.")


class ApiProblem(Exception):
    """Raised inside routes for answers that are not project errors (auth, denial, not-ready)."""

    def __init__(self, status: int, code: str, detail: str, *, hint: str | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.response = problem(status, code, detail, hint=hint, headers=headers, **extensions)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(_: Request, exc: ApiProblem) -> ProblemResponse:
        return exc.response

    @app.exception_handler(HallmarkError)
    @app.exception_handler(RegistryError)
    @app.exception_handler(GeneratorError)
    async def _project_error(_: Request, exc: HallmarkError | RegistryError | GeneratorError) -> ProblemResponse:
        return problem(exc.status, exc.code, exc.message, hint=exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = [{"field": ".".join(str(part) for part in error["loc"][1:]) or "body", "message": error["msg"]}
                  for error in exc.errors()]
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
        return problem(422, "invalid_input", f"The request is not valid: {detail}", errors=errors,
                       hint="Correct the fields named in `errors`; /docs shows every field and its range.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> ProblemResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status_code,
                                                                                          "http_error")
        hint = {404: "Check the URL; /docs lists every endpoint.",
                405: "Check the method; /docs lists what each endpoint accepts.",
                413: BODY_LIMIT_HINT}.get(exc.status_code)
        return problem(exc.status_code, code, str(exc.detail), hint=hint, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> ProblemResponse:
        log.exception("unhandled error")
        return problem(500, "internal_error", "An internal error occurred; it has been logged.",
                       hint="Retry later; if it persists, tell the operator the time of the request.")
