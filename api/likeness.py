"""The gate once faces are known: on a request's reference image (at submit and in the dry run) and on the
generated frames (at release). One function serves all three, so a face is judged the same way wherever it shows.

Every cameo whose face is found is put to the gate as if the request had named it by @handle: the gate stays the
one place that decides who may use a cameo (visibility, approvals, content restrictions, expiry, revocation).
A refusal for a cameo the requester may not see becomes a `likeness_without_consent` that names nobody, every
protected person whose face is found is refused unless their own cameo consented, and every face on a reference
image that matches no cameo (or cannot be compared) is refused (guard/likeness/output.py). The details of a hidden
match go to the audit log (auditors) and to the cameo's appearances (its owner), never to the requester."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sqlmodel import Session

from api import cameos as cameo_records
from api.context import Hallmark
from api.works import open_checked_image
from guard.gate import Decision, GateRequest, mentioned_handles
from guard.likeness.output import OutputFinding, hidden_cameo_findings, output_decision, scan_picture
from guard.likeness.service import UNKNOWN_FACE, UNREADABLE_FACE
from registry import AuditLog, Cameo, Cameos, SubjectKind, Visibility

REFERENCE_IMAGE = "reference image"
OUTPUT = "generated video"


def reference_rgb(data: bytes) -> np.ndarray:
    """A reference image as RGB uint8 (upright, as the gate sees it), after the same checks as a work's image (size,
    pixels, readable): a bad image is the caller's error (4xx), never a denial or a pass."""
    return np.asarray(open_checked_image(REFERENCE_IMAGE, data).convert("RGB"))


def reference_findings(hm: Hallmark, data: bytes | None) -> list[OutputFinding]:
    """Every cameo and protected person whose face is in the reference image, then every face in it that matches
    nobody (kind UNKNOWN_FACE or UNREADABLE_FACE)."""
    if data is None:
        return []
    return scan_picture(reference_rgb(data), hm.likeness)


def visible_cameos(session: Session, requester_id: str, findings: list[OutputFinding]) -> set[str]:
    """The found cameos the requester may know of: their own, shared with everyone, or approved for them."""
    cameos = Cameos(session)
    visible = set()
    for finding in findings:
        if finding.match.kind != SubjectKind.cameo:
            continue
        cameo = session.get(Cameo, finding.match.subject_id)
        if cameo is None:  # deleted since the match: nothing to tell anyone about
            continue
        if (cameo.owner_id == requester_id or cameo.visibility == Visibility.everyone
                or (cameo.visibility == Visibility.approved and requester_id in cameos.approved_accounts(cameo.id))):
            visible.add(cameo.id)
    return visible


@dataclass(frozen=True)
class FaceDecision:
    decision: Decision
    hidden: list[OutputFinding]  # refused cameos the requester was not told of (see output_decision)

    @property
    def hidden_cameo_ids(self) -> frozenset[str]:
        """The cameos the decision's anonymous `likeness_without_consent` reasons were made for: only their owners'
        records get that reason (it names nobody, so the decision alone cannot say whose face it is about)."""
        return frozenset(finding.match.subject_id for finding in self.hidden)


def face_decision(hm: Hallmark, session: Session, request: GateRequest, findings: list[OutputFinding], where: str,
                  *, reveal: bool = False, reference_faces: Sequence[OutputFinding] = ()) -> FaceDecision:
    """The gate's decision for `request` with the cameos found in `findings` added, then the face rules. At release
    the caller passes the reference image's faces, looked at again: one that matches nobody now (its cameo deleted
    since submit) stops the release. `reveal` (operators only) keeps the details of hidden matches in the answer.
    Each hidden match is audited, in the caller's transaction, with what the requester is not told."""
    findings = [*findings, *(finding for finding in reference_faces
                             if finding.match.kind in (UNKNOWN_FACE, UNREADABLE_FACE))]
    found = [finding.match.handle for finding in findings if finding.match.handle]
    # The same request with the found cameos added (replace: a field copied by hand was once left behind).
    gated = hm.gate(session).check(replace(request, cameo_handles=[*request.cameo_handles, *found]))
    visible = visible_cameos(session, request.requester_id, findings)
    decision = output_decision(gated, findings, set(mentioned_handles(request)),
                               cameo_records.protected_cameo_links(session, findings), where=where,
                               visible_cameos=visible, reveal=reveal)
    hidden = hidden_cameo_findings(gated, findings, visible)
    audit = AuditLog(session)
    for finding in hidden:
        audit.append("likeness.hidden_match", actor_id=request.requester_id, subject=finding.match.subject_id,
                     where=where, similarity=round(finding.match.similarity, 4),
                     gate_reasons=[r.code for r in gated.reasons if r.subject == finding.match.label],
                     personal={"handle": finding.match.label})
    return FaceDecision(decision, hidden)
