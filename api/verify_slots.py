"""How many verifications run at once in one process, shared by every endpoint that reads an uploaded clip's
watermark or manifest (`POST /v1/verify`, `POST /matches/byContent`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.problems import ApiProblem

# A verification is CPU-bound (decoding, the detector's FFTs, C2PA hashing): running more at once than there are
# cores only makes each slower, and unbounded, a burst of uploads would starve the rest of the API. Two at least, so
# that one long clip does not hold up every other caller. HALLMARK_VERIFY_CONCURRENCY overrides it.
DEFAULT_SLOTS = max(2, len(os.sched_getaffinity(0)) // 2) if hasattr(os, "sched_getaffinity") else 2
# A caller whose upload arrives while every slot is busy waits for one (HALLMARK_VERIFY_QUEUE_SECONDS, 30 s by
# default), as a person uploading a file expects; only when the wait grows long, or too many are already waiting
# (each holding an upload on disk), is it told to come back.
WAITING_PER_SLOT = 8
RETRY_AFTER_SECONDS = 15


class VerifySlots:
    """At most `size` verifications run at once in this process; the others queue, up to `max_waiting` of them for
    at most `wait_seconds`, and beyond that get 503 with Retry-After."""

    def __init__(self, size: int = DEFAULT_SLOTS, wait_seconds: float = 30.0, max_waiting: int | None = None) -> None:
        self.size = size
        self.wait_seconds = wait_seconds
        self.max_waiting = WAITING_PER_SLOT * size if max_waiting is None else max_waiting
        self._semaphore = asyncio.Semaphore(size)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot now."""
        return self._waiting

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if not self._semaphore.locked():
            await self._semaphore.acquire()  # a free slot: taken at once (wait_for with 0 s would time out first)
        elif self._waiting >= self.max_waiting or self.wait_seconds <= 0:
            raise _busy()
        else:
            self._waiting += 1
            try:
                await asyncio.wait_for(self._semaphore.acquire(), self.wait_seconds)
            except TimeoutError:
                raise _busy() from None
            finally:
                self._waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()


def _busy() -> ApiProblem:
    return ApiProblem(503, "busy", "The server is verifying as many clips as it can at once; this upload was not "
                      "checked.", hint=f"Retry after {RETRY_AFTER_SECONDS} s.",
                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def verify_slots(app: FastAPI) -> VerifySlots:
    """The app's slots, made on first use (inside its event loop; each app has its own), as its settings say."""
    slots = getattr(app.state, "verify_slots", None)
    if slots is None:
        settings = app.state.hallmark.settings
        slots = app.state.verify_slots = VerifySlots(settings.verify_concurrency or DEFAULT_SLOTS,
                                                     settings.verify_queue_seconds)
    return slots
