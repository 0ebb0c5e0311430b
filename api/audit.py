"""The audit log as the API and the CLI serve it: signed checkpoints (periodic and on demand), proofs, entries,
exports, period reports and the erasure of personal data. The log itself is `registry.audit`."""

from __future__ import annotations

import base64
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import select

from api.context import Hallmark
from guard.errors import InvalidInput, KeyMaterialError
from guard.provenance.keys import read_secret
from registry import AuditLog, AuditTree
from registry.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_private_key,
    public_key_bytes,
    sign_checkpoint,
    verifier_key,
)
from registry.audit.export import ExportError, write_export
from registry.audit.leaf import decode_leaf
from registry.audit.tables import AuditCheckpoint, AuditEntry, AuditPending
from registry.audit.tree import AuditIntegrityError, DatabaseReport, LoggedEntry
from registry.cameos import Cameo

log = logging.getLogger("hallmark.audit")

MAX_PAGE = 1000

# What a generation event says about the gate's decision, for reports.
DECISIONS = {"generation.allowed": "allowed", "generation.denied": "denied", "generation.withheld": "withheld"}


def record_policy_loaded(hm: Hallmark) -> str:
    """Log `policy.loaded` when a server or worker starts on another policy version than the last one logged (a
    restart on the same files adds nothing; going back to an earlier version is logged again). Every decision also
    carries its policy version; this entry ties that version to when it came into force and to its files."""
    version = hm.policy.version
    with hm.db.session() as session:
        # Queued events are newer than sequenced ones, so the last queued one wins. Queued first, then sequenced: an
        # event the integrator moves between the two reads is then seen by one of them (never by neither).
        latest = session.exec(select(AuditPending.subject).where(AuditPending.kind == "policy.loaded")
                              .order_by(AuditPending.id.desc()).limit(1)).first()  # type: ignore[union-attr]
        if latest is None:
            latest = session.exec(select(AuditEntry.subject).where(AuditEntry.kind == "policy.loaded")
                                  .order_by(AuditEntry.leaf_index.desc()).limit(1)).first()  # type: ignore[union-attr]
        if latest != version:
            files = sorted(p.name for p in hm.policy.directory.iterdir() if p.is_file() and not p.name.startswith("_")
                           and p.suffix in (".cedar", ".cedarschema", ".toml", ".txt"))
            AuditLog(session).append("policy.loaded", subject=version, directory=str(hm.policy.directory),
                                     files=files, rules=sorted(hm.policy.rules))
    return version


def tree(hm: Hallmark) -> AuditTree:
    return AuditTree(hm.db.engine)


def signing_key(hm: Hallmark) -> Ed25519PrivateKey:
    try:
        return load_private_key(read_secret(hm.paths.log_key, "audit log signing key"))
    except CheckpointError as exc:
        raise KeyMaterialError(str(exc), hint="Restore keys/log.key from your backup; only if it is lost, move it "
                               "away and run `hallmark init` for a new one (checkpoints published before then stop "
                               "verifying).") from exc


def public_key(hm: Hallmark) -> bytes:
    return public_key_bytes(signing_key(hm))


def state_file(hm: Hallmark) -> Path:
    """The last checkpoint the log signed, kept beside the log key (outside the database): see registry.audit.state."""
    return hm.paths.log_key.with_name("log.state")


def checkpoint(hm: Hallmark) -> AuditCheckpoint:
    """A signed checkpoint of the whole log now (a new one only if the log grew since the last). Refused with
    AuditIntegrityError when the log does not extend the last checkpoint it signed."""
    key = signing_key(hm)

    def sign(cp: Checkpoint) -> str:
        return sign_checkpoint(cp, key)

    return tree(hm).checkpoint(hm.settings.audit_origin, sign, public_key_bytes(key), state_file=state_file(hm))


def verify_database(hm: Hallmark) -> DatabaseReport:
    """The stored log checked in place (entries -> nodes -> head -> every signed root); nothing is signed."""
    return tree(hm).verify_database(hm.settings.audit_origin, public_key(hm), state_file(hm))


def verifier_key_string(hm: Hallmark) -> str:
    return verifier_key(hm.settings.audit_origin, public_key(hm))


# --- reading ----------------------------------------------------------------------------------------------------
def entry_view(entry: LoggedEntry) -> dict[str, Any]:
    fields = entry.personal or {}
    return {
        "index": entry.index,
        "leaf_b64": base64.b64encode(entry.leaf).decode(),
        "leaf_hash_b64": base64.b64encode(entry.leaf_hash).decode(),
        "event": decode_leaf(entry.leaf),
        "personal": {name: {"value": item["value"], "salt_b64": item["salt"]} for name, item in fields.items()},
    }


def entries(hm: Hallmark, start: int, end: int | None) -> dict[str, Any]:
    end = start + MAX_PAGE if end is None else end
    if end < start:
        raise InvalidInput(f"end ({end}) is before start ({start}).")
    if end - start > MAX_PAGE:
        raise InvalidInput(f"At most {MAX_PAGE} entries per page; asked for {end - start}.",
                           hint="Page with start= and end=, or use `hallmark audit export` for the whole log.")
    log_tree = tree(hm)
    log_tree.integrate()
    size = log_tree.size()
    start, end = min(start, size), min(end, size)  # a page past the end is empty, as in any paging API
    return {"size": size, "start": start, "end": end,
            "entries": [entry_view(entry) for entry in log_tree.entries(start, end)]}


def _b64(values: list[bytes]) -> list[str]:
    return [base64.b64encode(value).decode() for value in values]


def inclusion(hm: Hallmark, index: int, size: int | None) -> dict[str, Any]:
    """An inclusion proof; without `size`, against a fresh signed checkpoint (returned with it)."""
    signed = checkpoint(hm) if size is None else None
    size = signed.size if signed is not None else size
    log_tree = tree(hm)
    proof = log_tree.inclusion_proof(index, size)
    found = log_tree.entries(index, index + 1)
    if not found:  # the tree has the entry's node, the table not the entry
        raise AuditIntegrityError(f"Entry {index} is in the audit tree but missing from the stored entries.")
    leaf = found[0]
    return {"index": index, "size": size, "leaf_b64": base64.b64encode(leaf.leaf).decode(),
            "leaf_hash_b64": base64.b64encode(leaf.leaf_hash).decode(), "hashes_b64": _b64(proof),
            "root_hash_b64": base64.b64encode(log_tree.root(size)).decode(),
            "checkpoint": signed.note if signed is not None else None}


def consistency(hm: Hallmark, old: int, new: int | None) -> dict[str, Any]:
    signed = checkpoint(hm) if new is None else None
    new = signed.size if signed is not None else new
    log_tree = tree(hm)
    proof = log_tree.consistency_proof(old, new)
    return {"old": old, "new": new, "hashes_b64": _b64(proof),
            "old_root_hash_b64": base64.b64encode(log_tree.root(old)).decode(),
            "new_root_hash_b64": base64.b64encode(log_tree.root(new)).decode(),
            "checkpoint": signed.note if signed is not None else None}


# --- export -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportResult:
    directory: Path
    entries: int
    checkpoint: AuditCheckpoint


def export(hm: Hallmark, directory: Path, *, include_personal: bool = True,
           on_entry: Callable[[int], None] | None = None) -> ExportResult:
    signed = checkpoint(hm)
    log_tree = tree(hm)

    def lines():  # type: ignore[no-untyped-def]
        expected = 0
        for entry in log_tree.iter_entries(0, signed.size):
            if entry.index != expected:  # the database lost rows: not the caller's input, the log's integrity
                raise AuditIntegrityError(f"The audit log has no stored entry {expected} (the next stored one is "
                                          f"{entry.index}), although its signed checkpoint covers it.")
            if on_entry is not None:
                on_entry(entry.index)
            yield entry.index, entry.leaf, entry.personal if include_personal else None
            expected += 1
        if expected != signed.size:
            raise AuditIntegrityError(f"The audit log's stored entries end at {expected}; its signed checkpoint "
                                      f"covers {signed.size}.")

    try:
        count = write_export(directory, note=signed.note, origin=hm.settings.audit_origin,
                             public_key=public_key(hm), entries=lines(),
                             leaf_hashes=log_tree.iter_leaf_hashes(0, signed.size))
    except (ExportError, OSError) as exc:
        raise InvalidInput(f"Cannot export the audit log to {directory}: {exc}",
                           hint="Give a new or empty directory you can write to.") from exc
    return ExportResult(directory, count, signed)


# --- reports ----------------------------------------------------------------------------------------------------
def period_bound(value: str | None, *, end: bool) -> datetime | None:
    """A report period's start or end as the CLI (--from/--to) and the API (from=/to=) both take it: an ISO 8601
    date or date-time, UTC unless it says otherwise. A bare date as the end includes that whole day, so that
    "--to 2026-11-30" and "to=2026-11-30" both mean the same period, up to the end of November."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(), timezone.utc)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{value!r} is not an ISO 8601 date or date-time.",
                           hint="e.g. 2026-01-31 or 2026-01-31T12:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def report(hm: Hallmark, start: datetime, end: datetime) -> dict[str, Any]:
    """Counts for a reporting period [start, end): by event, decision, reason and policy version."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)  # the log stores UTC
    if end <= start:
        raise InvalidInput(f"The period is empty: its end ({end.isoformat()}) is not after its start "
                           f"({start.isoformat()}).", hint="Give an end (to) after the start (from).")
    signed = checkpoint(hm)
    by_event: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    policies: defaultdict[str, Counter[str]] = defaultdict(Counter)
    first = last = None
    for entry in tree(hm).entries_between(start, end, size=signed.size):  # checked against the signed tree
        event = entry.event
        first = entry.index if first is None else first
        last = entry.index
        by_event[event["kind"]] += 1
        data = event["data"]
        decision = DECISIONS.get(event["kind"])
        if decision is not None:
            decisions[decision] += 1
            for code in data.get("reasons") or []:
                reasons[str(code)] += 1
            if data.get("policy_version"):
                policies[str(data["policy_version"])][decision] += 1
    return {
        "from": start.isoformat(), "to": end.isoformat(),
        "entries": sum(by_event.values()), "first_index": first, "last_index": last,
        "by_event": dict(sorted(by_event.items())),
        "decisions": dict(sorted(decisions.items())),
        "reasons": dict(reasons.most_common()),
        "policy_versions": {version: dict(sorted(counts.items())) for version, counts in sorted(policies.items())},
        "checkpoint": {"origin": hm.settings.audit_origin, "size": signed.size,
                       "root_hash_b64": base64.b64encode(signed.root_hash).decode()},
    }


# --- erasure ----------------------------------------------------------------------------------------------------
def erase(hm: Hallmark, indexes: list[int], *, subject: str | None = None, reason: str | None = None,
          actor_id: str | None = None) -> dict[int, list[str]]:
    """Erase the personal data of these entries (and of every entry about or by `subject`, and, when `subject` is
    an account, about its cameos: their handles and verification evidence are the account holder's data too); each
    erasure is itself logged. Returns {index: erased fields} ({} fields when there was nothing left to erase)."""
    if not indexes and subject is None:
        raise InvalidInput("Name the entries to erase, or --subject.", hint="hallmark audit erase 12 13")
    log_tree = tree(hm)
    log_tree.integrate()
    erased: dict[int, list[str]] = {}
    with hm.db.session() as session:
        audit = AuditLog(session)
        subjects = [] if subject is None else [subject, *session.exec(  # deleted cameos keep their owner
            select(Cameo.id).where(Cameo.owner_id == subject).order_by(Cameo.id)).all()]
        targets = list(dict.fromkeys([*indexes, *audit.erasable(subjects)]))
        for index in targets:
            erased[index] = audit.erase(index, actor_id=actor_id, reason=reason)
    log_tree.scrub()
    return erased


# --- periodic checkpoints ---------------------------------------------------------------------------------------
class Checkpointer:
    """Signs a checkpoint every `seconds` when the log grew (and sequences stragglers), in a daemon thread."""

    def __init__(self, hm: Hallmark, seconds: float) -> None:
        self.hm, self.seconds = hm, seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.seconds <= 0:
            return
        self._thread = threading.Thread(target=self._run, daemon=True, name="hallmark-audit-checkpoints")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                checkpoint(self.hm)
            except Exception:
                log.exception("could not sign the periodic audit checkpoint")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
