"""The output check: faces on frames sampled from a generated clip (about two per second), matched against every
cameo and protected person. This catches a model that draws a registered person nobody asked for; whether the
requester may show that person is the gate's decision, not this module's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from guard.gate.decision import Decision, Reason
from guard.likeness.service import Likeness, LikenessMatch
from registry import SubjectKind


@dataclass(frozen=True)
class OutputFinding:
    match: LikenessMatch  # the best match of this subject over all sampled frames
    frame: int
    time: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.match.as_dict(), "frame": self.frame, "time": round(self.time, 2)}


def sample_indices(frame_count: int, fps: float, per_second: float) -> list[int]:
    if frame_count <= 0:
        return []
    step = max(1, int(round(fps / per_second))) if per_second > 0 else frame_count
    return list(range(0, frame_count, step))


def scan_frames(frames: np.ndarray, fps: float, likeness: Likeness, *, per_second: float = 2.0) -> list[OutputFinding]:
    """Every subject seen on the sampled frames (RGB uint8, shape (T, H, W, 3)), with its best similarity."""
    if likeness.enrolled == 0:  # nobody to recognise: no need to look for faces at all
        return []
    best: dict[tuple[str, str], OutputFinding] = {}
    for index in sample_indices(len(frames), fps, per_second):
        for match in likeness.match_faces(frames[index]):
            key = (match.kind, match.subject_id)
            if key not in best or match.similarity > best[key].match.similarity:
                best[key] = OutputFinding(match, index, index / fps)
    return sorted(best.values(), key=lambda finding: -finding.match.similarity)


def output_decision(decision: Decision, findings: list[OutputFinding], requested_handles: set[str],
                    protected_cameos: dict[str, str] | None = None, *, where: str = "generated video") -> Decision:
    """The release decision once faces on the output are known. `decision` is the gate's answer for the request
    with every matched cameo's handle added (the gate alone decides who may use a cameo); here a refusal for a
    handle the request did not name becomes `likeness_without_consent` (the model drew that person unasked), and
    every protected person on screen is refused unless their own cameo (`protected_cameos`: protected person id ->
    cameo id) is among the cameos the gate consented to. `where` names the picture the faces were found on
    ("generated video": the clip is withheld; "reference image": the request is denied)."""
    outcome = "it is withheld" if where == "generated video" else "the request is denied"
    findings_by_handle = {f.match.handle: f for f in findings if f.match.kind == SubjectKind.cameo}
    reasons: list[Reason] = []
    for reason in decision.reasons:
        handle = reason.subject[1:] if reason.subject and reason.subject.startswith("@") else None
        finding = findings_by_handle.get(handle) if handle else None
        if finding is not None and handle not in requested_handles:
            reasons.append(Reason(
                "likeness_without_consent",
                f"The {where} shows the face of @{handle}, whose owner has not allowed you to use their "
                f"likeness; {outcome}.",
                subject=f"@{handle}", evidence={**finding.as_dict(), "gate_reason": reason.code}))
        else:
            reasons.append(reason)
    consented = set(decision.cameo_ids) if decision.allowed else set()
    for finding in findings:
        if finding.match.kind != SubjectKind.protected:
            continue
        own_cameo = (protected_cameos or {}).get(finding.match.subject_id)
        if own_cameo is not None and own_cameo in consented:
            continue
        reasons.append(Reason(
            "likeness_without_consent",
            f"The {where} shows the face of {finding.match.label}, a protected person; {outcome}.",
            subject=f"protected:{finding.match.label}", evidence=finding.as_dict()))
    return Decision(allowed=not reasons, reasons=reasons, policy_version=decision.policy_version,
                    obligations=decision.obligations, cameo_ids=decision.cameo_ids if not reasons else [])
