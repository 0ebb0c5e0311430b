"""The gate once faces are known: on a request's reference image (at submit and in the dry run) and on the
generated frames (at release). One function serves all three, so a face is judged the same way wherever it shows.

Every cameo whose face is found is put to the gate as if the request had named it by @handle: the gate stays the
one place that decides who may use a cameo (visibility, approvals, content restrictions, expiry, revocation).
A refusal for a cameo the request did not name becomes `likeness_without_consent`, and every protected person
whose face is found is refused unless their own cameo consented (guard/likeness/output.py)."""

from __future__ import annotations

import numpy as np
from sqlmodel import Session

from api import cameos as cameo_records
from api.context import Hallmark
from api.works import open_checked_image
from guard.gate import Decision, GateRequest, mentioned_handles
from guard.likeness.output import OutputFinding, output_decision, scan_frames

REFERENCE_IMAGE = "reference image"
OUTPUT = "generated video"


def reference_rgb(data: bytes) -> np.ndarray:
    """A reference image as RGB uint8 (upright, as the gate sees it), after the same checks as a work's image (size,
    pixels, readable): a bad image is the caller's error (4xx), never a denial or a pass."""
    return np.asarray(open_checked_image(REFERENCE_IMAGE, data).convert("RGB"))


def reference_findings(hm: Hallmark, data: bytes | None) -> list[OutputFinding]:
    """Every cameo and protected person whose face is in the reference image."""
    if data is None:
        return []
    return scan_frames(reference_rgb(data)[None], 1.0, hm.likeness, per_second=1.0)


def decide_with_faces(hm: Hallmark, session: Session, request: GateRequest, findings: list[OutputFinding],
                      where: str) -> Decision:
    """The gate's decision for `request` with the cameos found in `findings` added, then the face rules."""
    found = [finding.match.handle for finding in findings if finding.match.handle]
    decision = hm.gate(session).check(GateRequest(
        requester_id=request.requester_id, prompt=request.prompt, cameo_handles=[*request.cameo_handles, *found],
        commercial=request.commercial, reference_image=request.reference_image, now=request.now))
    return output_decision(decision, findings, set(mentioned_handles(request)),
                           cameo_records.protected_cameo_links(session, findings), where=where)
