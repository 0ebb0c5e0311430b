"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import HallmarkDep
from api.generation import HALLMARK_VERSION

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(hm: HallmarkDep) -> dict[str, object]:
    """Answers 200 when the database is reachable and its schema is current, 503 otherwise."""
    hm.db.require_schema()  # raises DatabaseUnavailable → 503 problem
    return {"status": "ok", "version": HALLMARK_VERSION, "generator": hm.settings.generator,
            "watermark_method": hm.settings.watermark_method, "policy_version": hm.policy_version}
