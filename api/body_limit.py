"""Request body limits: every request body is cut off at its endpoint's limit before the endpoint reads it.

FastAPI reads a JSON endpoint's body whole, whatever its Content-Type, before authentication or validation run, so
without a cap anyone could make the server hold a gigabyte in memory with one unauthenticated POST (a JSON body
parsed into Python objects takes several times its size). Here every endpoint gets `default` (`MAX_JSON_BYTES`)
unless `app.py` names another limit for it: the JSON endpoints that may carry a base64 image
(HALLMARK_MAX_REQUEST_BYTES), the video uploads (HALLMARK_MAX_UPLOAD_BYTES, which they also check themselves as
they stream), a works' images form, the small soft-binding query. A declared Content-Length over the limit is
refused before any of the body is read; a body sent without one (chunked) is cut off when the bytes received pass
it. Either way the answer is a 413 problem (problems.py).

FastAPI 0.165 has a `max_body_size` of its own, but when a request declares an oversized Content-Length it replaces
whatever the app answers with a plain-text "Content Too Large", not a problem body, so it is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


MAX_JSON_BYTES = 1024 * 1024  # every other body: the largest legitimate one (500 work aliases) is far below this


@dataclass(frozen=True)
class Limit:
    """An endpoint's body limit: `content` bytes, the number a 413 quotes, plus `framing` bytes allowed on top for a
    multipart form's boundaries and part headers (a person sending a file counts the file, not the framing)."""

    content: int
    framing: int = 0


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes its limit. An HTTPException, so FastAPI passes it on to the problem
    handlers as it is (it turns other errors met while reading a body into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the {limit} bytes this endpoint accepts.")


class BodyLimit:
    """ASGI middleware: `limits` maps an endpoint function to its body limit (bytes, or a `Limit` for a form); other
    endpoints get `default` bytes.

    The limit is chosen at the first read of the body, when routing has put the endpoint in the scope; an endpoint
    that never reads its body is never limited, and never holds one either."""

    def __init__(self, app: ASGIApp, *, default: int, limits: Mapping[Callable[..., Any], int | Limit]) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: Limit | None = None
        received = 0

        async def limited_receive() -> Message:
            nonlocal limit, received
            if limit is None:
                entry = self.limits.get(scope.get("endpoint"), self.default)  # type: ignore[arg-type]
                limit = entry if isinstance(entry, Limit) else Limit(entry)
                declared = _content_length(scope)
                if declared is not None and declared > limit.content + limit.framing:
                    raise BodyTooLarge(limit.content)  # before a byte of it is read
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.content + limit.framing:
                    raise BodyTooLarge(limit.content)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
