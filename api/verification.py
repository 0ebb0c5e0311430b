"""Verification as the API and the CLI run it: the guard's report, with the generation record the watermark leads
to, shown in full to its requester, admins and auditors, and as public fields to everyone else."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import c2pa
from sqlmodel import Session

from api.context import Hallmark
from guard.provenance import trust_context
from guard.verify import LabelResolver, Resolution, Resolver, VerificationReport, verify_media
from registry import Account, Accounts, AuditLog, Generation, Generations, Role
from registry.clock import as_utc, utcnow

COUNT_PERIOD_SECONDS = 300.0


class VerifyCounter:
    """Verify requests are audited only as counts (no file, caller or result), and aggregated per period: verify is
    public and unauthenticated, so one log entry per request would let anyone grow the log without bound.

    Each process counts in memory and appends one `verify.counted` event per period (on the first verify after
    the period ends, and when the process stops)."""

    def __init__(self, period_seconds: float = COUNT_PERIOD_SECONDS) -> None:
        self.period_seconds = period_seconds
        self._lock = threading.Lock()
        self._count = 0
        self._since: datetime = utcnow()

    def add(self, hm: Hallmark) -> None:
        with self._lock:
            self._count += 1
            due = (utcnow() - self._since).total_seconds() >= self.period_seconds
        if due:
            self.flush(hm)

    def flush(self, hm: Hallmark) -> None:
        with self._lock:
            count, since, until = self._count, self._since, utcnow()
            self._count, self._since = 0, until
        if count:
            with hm.db.session() as session:
                AuditLog(session).append("verify.counted", count=count, period_start=since.isoformat(),
                                         period_end=until.isoformat())


def public_record(generation: Generation, operator: str) -> dict[str, Any]:
    created = as_utc(generation.created_at)
    return {
        "generation_id": generation.id,
        "status": generation.status,
        "withdrawn": generation.status == "withdrawn",
        "created_at": created.isoformat() if created else None,
        "operator": operator,
        "model": generation.model_name or generation.backend,
        "manifest_label": generation.manifest_label,
        "watermark_key_id": generation.watermark_key_id,
        "visibility": "public",
    }


def full_record(generation: Generation, operator: str, requester_name: str | None) -> dict[str, Any]:
    return {
        **public_record(generation, operator),
        "visibility": "full",
        "requester": requester_name,
        "prompt": generation.prompt,
        "params": generation.params,
        "decision": generation.decision,
        "policy_version": generation.policy_version,
        "watermark_payload": generation.watermark_payload,
        "output_sha256": generation.output_sha256,
    }


def resolver(hm: Hallmark, viewer: Account | None) -> Resolver:
    """Watermark payload -> the generation's record (as this viewer may see it), its stored manifest and the
    released original."""

    def resolve(payload: bytes) -> Resolution | None:
        with hm.db.session() as session:
            generation = Generations(session).by_payload(payload.hex())
            return _resolution(hm, session, generation, viewer) if generation is not None else None

    return resolve


def label_resolver(hm: Hallmark, viewer: Account | None) -> LabelResolver:
    """Manifest label -> the generation released with that manifest (what confirms a file's manifest as ours)."""

    def resolve(label: str) -> Resolution | None:
        with hm.db.session() as session:
            generation = Generations(session).by_manifest_label(label)
            return _resolution(hm, session, generation, viewer) if generation is not None else None

    return resolve


def _resolution(hm: Hallmark, session: Session, generation: Generation, viewer: Account | None) -> Resolution:
    sees_all = viewer is not None and (viewer.id == generation.requester_id
                                       or viewer.role in (Role.admin, Role.auditor))
    if sees_all:
        requester = Accounts(session).get(generation.requester_id)
        record = full_record(generation, hm.settings.operator_name, requester.name)
    else:
        record = public_record(generation, hm.settings.operator_name)
    original = Path(generation.output_path) if generation.output_path else None
    return Resolution(record, generation.manifest, generation.manifest_label, original)


def own_roots(hm: Hallmark) -> list[bytes]:
    """This service's own CA roots: the local root and those retired by `keys rotate --ca` (each keeps a copy in
    keys/retired/<time>/ca.pem). Not the operator's other trust anchors: a partner's CA is trusted for its own
    clips, not to speak for this service. (The root of an imported signing chain is not among them either, since
    that CA may certify others too: clips signed under it are confirmed through the store.)"""
    paths = hm.paths
    files = [paths.ca_cert] + (sorted(paths.retired.glob("*/ca.pem")) if paths.retired.is_dir() else [])
    roots = []
    for path in files:
        try:
            roots.append(path.read_bytes())
        except OSError:  # a retired copy that cannot be read confirms nothing; the store still can
            continue
    return roots


def own_trust(hm: Hallmark) -> c2pa.Context | None:
    roots = own_roots(hm)
    return trust_context(roots) if roots else None


def verify_file(hm: Hallmark, path: Path, viewer: Account | None) -> VerificationReport:
    report = verify_media(path, trust=hm.trust, method=hm.watermark, resolve=resolver(hm, viewer),
                          max_seconds=hm.settings.verify_max_seconds or None, by_label=label_resolver(hm, viewer),
                          own_trust=own_trust(hm))
    hm.verify_counter.add(hm)
    return report


def report_body(report: VerificationReport) -> dict[str, Any]:
    """The report as JSON, with where a recovered manifest can be fetched (the Soft Binding Resolution API)."""
    body = report.as_dict()
    recovered = body.get("recovered_manifest")
    if recovered and recovered.get("manifest_label"):
        recovered["url"] = f"/manifests/{recovered['manifest_label']}"
    return body
