"""Generation records: the request, the gate's decision, job status and progress, and what was released."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, LargeBinary, Text, update
from sqlmodel import Field, Session, SQLModel, col, select

from registry.clock import utcnow
from registry.errors import NotFound


class Status(StrEnum):
    denied = "denied"  # the gate refused; nothing was generated
    queued = "queued"
    running = "running"  # the generator is working
    marking = "marking"  # visible + invisible marks, C2PA signing, release checks
    completed = "completed"  # released: marked, signed, recorded
    failed = "failed"  # an error; nothing released
    withheld = "withheld"  # generated, but a release check (consent, likeness) failed; nothing released
    withdrawn = "withdrawn"  # released, later withdrawn by a cameo owner or an admin


ACTIVE = (Status.queued, Status.running, Status.marking)


class Generation(SQLModel, table=True):
    __tablename__ = "generations"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    requester_id: str = Field(foreign_key="accounts.id", index=True, max_length=32)
    prompt: str = Field(sa_type=Text)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    decision: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    policy_version: str = Field(default="", max_length=80)
    status: str = Field(default=Status.queued, index=True, max_length=16)
    progress: float = 0.0
    error: str | None = Field(default=None, sa_type=Text)
    backend: str = Field(default="", max_length=64)
    model_name: str = Field(default="", max_length=200)
    watermark_payload: str | None = Field(default=None, index=True, unique=True, max_length=16)
    watermark_method: str | None = Field(default=None, max_length=64)
    # The public id of the watermark key the released clip was marked with (None before it was recorded): a mark
    # that reads with another key cannot be this generation's (a forgery by whoever holds a retired key).
    watermark_key_id: str | None = Field(default=None, max_length=32)
    output_path: str | None = Field(default=None, sa_type=Text)
    output_sha256: str | None = Field(default=None, max_length=64)
    manifest: bytes | None = Field(default=None, sa_type=LargeBinary)
    manifest_label: str | None = Field(default=None, index=True, max_length=200)
    worker: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


def new_watermark_payload() -> str:
    """A fresh random 64-bit watermark payload (hex). Random, not sequential, so payloads leak no counts."""
    return secrets.token_hex(8)


class Generations:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, generation: Generation) -> Generation:
        self.session.add(generation)
        self.session.flush()
        return generation

    def find(self, generation_id: str) -> Generation | None:
        return self.session.get(Generation, generation_id)

    def get(self, generation_id: str) -> Generation:
        generation = self.find(generation_id)
        if generation is None:
            raise NotFound(f"No generation with id {generation_id!r}.")
        return generation

    def by_payload(self, payload_hex: str) -> Generation | None:
        return self.session.exec(
            select(Generation).where(Generation.watermark_payload == payload_hex.lower())
        ).first()

    def by_manifest_label(self, label: str) -> Generation | None:
        """The generation whose released clip carries the manifest `label` (the C2PA manifest id, urn:c2pa:...)."""
        return self.session.exec(select(Generation).where(Generation.manifest_label == label)).first()

    def for_requester(self, requester_id: str, limit: int = 100) -> list[Generation]:
        query = (
            select(Generation)
            .where(Generation.requester_id == requester_id)
            .order_by(col(Generation.created_at).desc())
            .limit(limit)
        )
        return list(self.session.exec(query))

    def claim(self, generation_id: str, worker: str) -> bool:
        """Move one queued job to running for `worker`; False when another worker got it first.

        A conditional UPDATE is atomic on SQLite and PostgreSQL alike, so the database is the queue's lock."""
        result = self.session.execute(
            update(Generation)
            .where(col(Generation.id) == generation_id, col(Generation.status) == Status.queued)
            .values(status=Status.running, worker=worker, progress=0.0, updated_at=utcnow())
        )
        return result.rowcount == 1

    def queued_ids(self, limit: int = 10) -> list[str]:
        query = (
            select(Generation.id)
            .where(Generation.status == Status.queued)
            .order_by(col(Generation.created_at))
            .limit(limit)
        )
        return list(self.session.exec(query))

    def touch(self, generation_ids: list[str]) -> None:
        """Heartbeat for running jobs: a job whose heartbeat stops is picked up again by `requeue_stale`."""
        if generation_ids:
            self.session.execute(
                update(Generation).where(col(Generation.id).in_(generation_ids)).values(updated_at=utcnow())
            )

    def requeue_stale(self, older_than: datetime) -> list[tuple[str, str | None]]:
        """Jobs left running or marking by a process that stopped (no heartbeat since `older_than`) go back to
        the queue; they restart from the beginning, nothing of theirs was released. Returns (id, the worker whose
        attempt died) of each, for the caller to log: the stale rows are read and locked (SELECT … FOR UPDATE, which
        SQLite ignores), then updated only if still stale, so a job whose worker came back in between stays with
        it, and what is returned is exactly what was requeued (UPDATE … RETURNING)."""
        stale = (col(Generation.status).in_([Status.running, Status.marking]),
                 col(Generation.updated_at) < older_than)
        dead = {row.id: row.worker for row in self.session.execute(
            select(Generation.id, Generation.worker).where(*stale).with_for_update())}
        if not dead:
            return []
        requeued = self.session.execute(
            update(Generation)
            .where(col(Generation.id).in_(list(dead)), *stale)
            .values(status=Status.queued, progress=0.0, worker=None, updated_at=utcnow())
            .returning(Generation.id)  # type: ignore[arg-type]
        )
        return sorted((str(row.id), dead[row.id]) for row in requeued)

    def set_status(self, generation: Generation, status: Status, *, progress: float | None = None,
                   error: str | None = None) -> Generation:
        generation.status = status
        if progress is not None:
            generation.progress = progress
        if error is not None:
            generation.error = error
        generation.updated_at = utcnow()
        if status in (Status.completed, Status.failed, Status.withheld):
            generation.completed_at = generation.updated_at
        self.session.add(generation)
        self.session.flush()
        return generation
