"""Appending to the audit log, in the caller's transaction, and the erasure of personal data.

    AuditLog(session).append("generation.requested", actor_id=account.id, subject=generation.id,
                             personal={"prompt": prompt}, params={...})

`**data` goes into the leaf as it is (public to auditors, immutable); `personal` values stay outside the leaf,
committed to by salted hashes, and can be erased later without touching the leaf or any proof.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, is_dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any

from sqlalchemy import LargeBinary, func, literal, null, or_, text, union_all
from sqlalchemy import event as sa_event
from sqlalchemy import insert
from sqlalchemy.orm import Session as SASession
from sqlmodel import Session, col, select

from registry.audit.leaf import (
    LeafError,
    assemble_leaf,
    canonical,
    commitment,
    decode_leaf,
    is_simple,
    leaf_parts,
    new_salt,
)
from registry.audit.tables import AuditEntry, AuditPending, AuditPersonal
from registry.audit.tree import AuditIntegrityError, column_mismatch, request_integration
from registry.clock import as_utc, utcnow
from registry.errors import NotFound, RegistryError

_KIND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
INSERT_PENDING = insert(AuditPending.__table__)
_STAGED = "hallmark.audit.staged"


class InvalidAuditEvent(RegistryError):
    """An event the log cannot record exactly (a programming error in the caller: the change is refused too)."""

    code = "invalid_audit_event"
    status = 500


@dataclass(frozen=True)
class AuditEvent:
    """An event as read back: `index` is its place in the log, None while it waits to be sequenced."""

    index: int | None
    at: datetime
    kind: str
    actor_id: str | None
    subject: str | None
    data: dict[str, Any]
    personal: dict[str, Any] | None  # field -> value, for fields not erased

    @property
    def seq(self) -> int | None:  # the v0 name
        return self.index


@dataclass(frozen=True)
class QueuedEvent:
    """An appended event, as queued in the caller's transaction (it gets its index when it is sequenced)."""

    at: datetime
    kind: str
    actor_id: str | None
    subject: str | None
    data: dict[str, Any]
    personal: dict[str, Any] | None


def _plain(value: Any) -> Any:
    """JSON-native copy of a value (enums by value, times as ISO 8601, paths as text), refusing anything else."""
    def default(item: Any) -> Any:
        if isinstance(item, Enum):
            return item.value
        if isinstance(item, (datetime, date)):
            return item.isoformat()
        if isinstance(item, PurePath):
            return str(item)
        if isinstance(item, (set, frozenset)):
            return sorted(item)
        if hasattr(item, "model_dump"):  # pydantic models
            return item.model_dump(mode="json")
        if is_dataclass(item) and not isinstance(item, type):
            return asdict(item)
        raise TypeError(f"{type(item).__name__} is not JSON")

    if is_simple(value):
        return value
    try:
        return json.loads(json.dumps(value, default=default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidAuditEvent(f"The audit event data cannot be logged exactly: {exc}") from exc


def _naming(subjects: list[str], dialect: str) -> Any:
    """Entries about or by any of `subjects`, found by their columns *or* by their leaves: an entry whose subject or
    actor column was changed by hand is still found (and then refused by _check_columns), not silently left out."""
    conditions = [col(AuditEntry.subject).in_(subjects), col(AuditEntry.actor_id).in_(subjects)]
    for subject in subjects:
        for member in (b'"subject":', b'"actor":'):  # the leaf is canonical JSON: exactly these bytes
            needle = member + canonical(subject)
            leaf = col(AuditEntry.leaf)
            if dialect == "sqlite":  # SQLite's LIKE does not match inside a BLOB; instr() compares its bytes
                conditions.append(func.instr(leaf, literal(needle, LargeBinary)) > 0)
            else:  # PostgreSQL's bytea LIKE, whose escape character is \\ by default
                escaped = needle.replace(b"\\", b"\\\\").replace(b"%", b"\\%").replace(b"_", b"\\_")
                conditions.append(leaf.like(literal(b"%" + escaped + b"%", LargeBinary)))
    return or_(*conditions)


def _check_columns(index: int, at: datetime, leaf: bytes, row: Any) -> dict[str, Any]:
    """The entry's decoded leaf, if its queryable columns agree with it; else AuditIntegrityError."""
    try:
        event = decode_leaf(leaf)
    except LeafError as exc:
        raise AuditIntegrityError(f"Audit entry {index} is not a valid leaf: {exc}.") from exc
    mismatch = column_mismatch(index, at, row.kind, row.actor_id, row.subject, event)
    if mismatch is not None:
        raise AuditIntegrityError(f"The audit log's stored entries do not match their leaves: {mismatch}.")
    return event


def _exactly(encode: Any, *args: Any, **kwargs: Any) -> Any:
    """Canonical encoding fails now, in the caller's transaction, for what JSON cannot carry exactly (NaN,
    integers beyond 2**53), rather than later in the integrator."""
    try:
        return encode(*args, **kwargs)
    except LeafError as exc:
        raise InvalidAuditEvent(f"The audit event data cannot be logged exactly: {exc}") from exc


class AuditLog:
    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, kind: str, *, actor_id: str | None = None, subject: str | None = None,
               personal: dict[str, Any] | None = None, **data: Any) -> QueuedEvent:
        """Record an event in the caller's transaction: it commits (and is later sequenced) with the change it
        records, or not at all. `personal` holds erasable personal data (prompt text, names, e-mail)."""
        if not _KIND.match(kind) or len(kind) > 64:
            raise InvalidAuditEvent(f"{kind!r} is not an audit event kind (like 'generation.requested').")
        stored_personal: dict[str, dict[str, Any]] = {}
        commitments: dict[str, str] = {}
        for name, value in (personal or {}).items():
            if not isinstance(name, str) or not _FIELD.match(name):
                raise InvalidAuditEvent(f"personal field names are lower_snake_case, not {name!r}")
            if value is None:
                continue
            salt, plain = new_salt(), _plain(value)
            stored_personal[name] = {"salt": base64.b64encode(salt).decode(), "value": plain}
            commitments[name] = _exactly(commitment, salt, plain)
        event = QueuedEvent(at=utcnow(), kind=kind, actor_id=actor_id, subject=subject, data=_plain(data),
                            personal=stored_personal or None)
        head, tail = _exactly(leaf_parts, at=event.at, kind=kind, actor_id=actor_id, subject=subject,
                              data=event.data, commitments=commitments)
        # A cached Core INSERT on the session's connection (same transaction), not an ORM object: a fraction of
        # the cost per event.
        self.session.connection().execute(INSERT_PENDING, {
            "at": event.at, "kind": kind, "actor_id": actor_id, "subject": subject, "leaf_head": head,
            "leaf_tail": tail, "personal": event.personal})
        self._integrate_after_commit()
        return event

    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def _integrate_after_commit(self) -> None:
        self.session.info[_STAGED] = True  # read by _after_commit below

    # --- reading ----------------------------------------------------------------------------------------------
    def for_subject(self, subject: str) -> list[AuditEvent]:
        """Every event about `subject` (or by it, as actor), sequenced ones first in log order, then waiting ones.
        Sequenced entries are found by their leaves too, and refused (AuditIntegrityError) if their columns were
        changed, so an entry cannot be hidden from this list by editing its row."""
        # One statement, so one snapshot. The integrator moves events from audit_pending to audit_entries in its own
        # transactions, and two SELECTs each saw their own snapshot (PostgreSQL's READ COMMITTED; SQLite's driver
        # opens no transaction for reads), so an event sequenced between them was in neither answer: seen in CI as
        # a cameo's missing `cameo.verified` (tests/test_audit.py sequences one exactly there).
        entries = (select(AuditEntry.leaf_index, AuditEntry.at, AuditEntry.kind, AuditEntry.actor_id,
                          AuditEntry.subject, AuditEntry.leaf,
                          AuditPersonal.fields.label("personal"),  # type: ignore[attr-defined]
                          null().label("pending_id"), null().label("leaf_head"), null().label("leaf_tail"))
                   .join(AuditPersonal, col(AuditPersonal.leaf_index) == col(AuditEntry.leaf_index), isouter=True)
                   .where(_naming([subject], self._dialect())))
        pending = (select(null(), AuditPending.at, AuditPending.kind, AuditPending.actor_id, AuditPending.subject,
                          null(), AuditPending.personal, AuditPending.id, AuditPending.leaf_head,
                          AuditPending.leaf_tail)
                   .where(or_(col(AuditPending.subject) == subject, col(AuditPending.actor_id) == subject)))
        both = union_all(entries, pending).subquery()
        rows = self.session.exec(
            select(*both.c).order_by(both.c.pending_id.is_not(None), both.c.leaf_index, both.c.pending_id)).all()
        events = []
        for row in rows:
            sequenced = row.pending_id is None
            if sequenced:
                event = _check_columns(int(row.leaf_index), row.at, bytes(row.leaf), row)
                if subject not in (event["subject"], event["actor"]):
                    continue  # the bytes matched inside the event's data, not as its subject or actor
            else:
                event = decode_leaf(assemble_leaf(row.leaf_head, 0, row.leaf_tail))
            values = {name: field["value"] for name, field in (row.personal or {}).items()} or None
            events.append(AuditEvent(row.leaf_index if sequenced else None, as_utc(row.at), event["kind"],
                                     event["actor"], event["subject"], event["data"], values))
        return events

    # --- erasure ----------------------------------------------------------------------------------------------
    def erase(self, index: int, *, actor_id: str | None = None, reason: str | None = None) -> list[str]:
        """Erase the personal data of entry `index` (values and salts), and log the erasure, in this transaction.
        The leaf keeps its commitments, so every proof stays valid. Returns the erased fields ([] if none)."""
        entry = self.session.get(AuditEntry, index)
        if entry is None:
            raise NotFound(f"The audit log has no entry {index}.",
                           hint="Entry numbers are the `index` of `hallmark audit export` lines.")
        personal = self.session.get(AuditPersonal, index)
        if personal is None:
            return []
        fields = sorted(personal.fields)
        if self.session.get_bind().dialect.name == "sqlite":
            self.session.execute(text("PRAGMA secure_delete=ON"))  # zero the erased bytes, not just unlink them
        self.session.delete(personal)
        self.append("audit.erased", actor_id=actor_id, subject=entry.subject, index=index, fields=fields,
                    reason=reason)
        return fields

    def erasable(self, subjects: str | list[str]) -> list[int]:
        """Indexes of entries about or by any of `subjects` that still hold personal data. Found by their leaves
        too, and refused (AuditIntegrityError) if their columns were changed: an erasure must not miss an entry."""
        wanted = [subjects] if isinstance(subjects, str) else list(subjects)
        if not wanted:
            return []
        rows = self.session.exec(
            select(AuditEntry.leaf_index, AuditEntry.at, AuditEntry.kind, AuditEntry.actor_id, AuditEntry.subject,
                   AuditEntry.leaf)
            .join(AuditPersonal, col(AuditPersonal.leaf_index) == col(AuditEntry.leaf_index))
            .where(_naming(wanted, self._dialect()))
            .order_by(col(AuditEntry.leaf_index))).all()
        indexes = []
        for row in rows:
            event = _check_columns(int(row.leaf_index), row.at, bytes(row.leaf), row)
            if event["subject"] in wanted or event["actor"] in wanted:
                indexes.append(int(row.leaf_index))
        return indexes


@sa_event.listens_for(SASession, "after_commit")
def _after_commit(session: SASession) -> None:
    """After a commit that appended events, wake this process's integrator (it returns at once)."""
    if session.info.pop(_STAGED, False):
        bind = session.get_bind()
        request_integration(getattr(bind, "engine", bind))  # a session may be bound to a Connection


@sa_event.listens_for(SASession, "after_rollback")
def _after_rollback(session: SASession) -> None:
    session.info.pop(_STAGED, None)
