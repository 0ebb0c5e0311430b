"""The audit log over HTTP, for auditors and admins: the signed checkpoint, entries, and RFC 9162 proofs.

Hashes are base64 (as in the checkpoint). A proof without an explicit size is made against a fresh signed
checkpoint, returned with it, so one call proves an entry is in the log the operator signed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import PlainTextResponse

from api import audit
from api.deps import AccountDep, HallmarkDep, flush_rejected_generations
from api.problems import ApiProblem
from registry import Account, Role
from registry.audit.tree import MAX_TREE_SIZE

# Indexes and sizes beyond any log are refused as bad input (422) before they reach the database.
Index = Annotated[int, Query(ge=0, le=MAX_TREE_SIZE)]
Size = Annotated[int, Query(ge=1, le=MAX_TREE_SIZE)]
OptionalIndex = Annotated[int | None, Query(ge=0, le=MAX_TREE_SIZE)]
OptionalSize = Annotated[int | None, Query(ge=1, le=MAX_TREE_SIZE)]


def auditor_account(account: AccountDep) -> Account:
    if account.role not in (Role.auditor, Role.admin):
        raise ApiProblem(403, "forbidden", "Only auditors and admins may read the audit log.",
                         hint="Ask an admin for an auditor account: `hallmark accounts create NAME --role auditor`.")
    return account


AuditorDep = Annotated[Account, Depends(auditor_account)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Periodic checkpoints while the server runs (HALLMARK_AUDIT_CHECKPOINT_SECONDS; 0 turns them off); at the end
    the counts of rate-limited generation requests not yet logged are logged."""
    hm = app.state.hallmark
    checkpointer = audit.Checkpointer(hm, hm.settings.audit_checkpoint_seconds)
    checkpointer.start()
    try:
        yield
    finally:
        checkpointer.stop()
        flush_rejected_generations(app)


router = APIRouter(prefix="/v1/audit", tags=["audit"], lifespan=lifespan)


@router.get("/checkpoint", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}}, "description": "A C2SP tlog-checkpoint signed note."}})
def get_checkpoint(hm: HallmarkDep, _: AuditorDep) -> PlainTextResponse:
    """The log's current signed checkpoint (origin, size, base64 root hash; Ed25519 signed note)."""
    signed = audit.checkpoint(hm)
    return PlainTextResponse(signed.note, media_type="text/plain; charset=utf-8")


@router.get("/entries")
def get_entries(hm: HallmarkDep, _: AuditorDep, start: Index = 0, end: OptionalIndex = None) -> dict[str, Any]:
    """Entries [start, end) (at most 1000): exact leaf bytes, the decoded event, and personal data not erased."""
    return audit.entries(hm, start, end)


@router.get("/proof/inclusion")
def get_inclusion(hm: HallmarkDep, _: AuditorDep, index: Index, size: OptionalSize = None) -> dict[str, Any]:
    """RFC 9162 §2.1.3 inclusion proof of entry `index` in the tree of `size` entries."""
    return audit.inclusion(hm, index, size)


@router.get("/proof/consistency")
def get_consistency(hm: HallmarkDep, _: AuditorDep, old: Size, new: OptionalSize = None) -> dict[str, Any]:
    """RFC 9162 §2.1.4 consistency proof that the tree of `old` entries is a prefix of the one of `new`."""
    return audit.consistency(hm, old, new)


@router.get("/report")
def get_report(hm: HallmarkDep, _: AuditorDep,
               start: Annotated[str | None, Query(alias="from", description="ISO 8601 date or date-time (UTC "
                                                    "unless it says otherwise)")] = None,
               end: Annotated[str | None, Query(alias="to", description="ISO 8601 date or date-time; a bare date "
                                                "includes that whole day")] = None) -> dict[str, Any]:
    """Counts by event, decision, reason and policy version for entries logged in [from, to)."""
    return audit.report(hm, audit.period_bound(start, end=False) or datetime.fromtimestamp(0, timezone.utc),
                        audit.period_bound(end, end=True) or datetime.now(timezone.utc))
