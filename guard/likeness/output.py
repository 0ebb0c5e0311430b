"""The output check: faces on frames sampled from a generated clip (about two per second), matched against every
cameo and protected person. This catches a model that draws a registered person nobody asked for; whether the
requester may show that person is the gate's decision, not this module's. A reference image is scanned the same
way (`scan_picture`), except that there every face counts: one that matches nobody is refused as well (a further
detection too weak to be a face, such as a patch on a suit, is not a face: service.shown_faces)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from guard.gate.decision import Decision, Reason
from guard.likeness.analysis import SECOND_FACE_SCORE, Box
from guard.likeness.service import (MIN_COMPARABLE_FACE, UNKNOWN_FACE, UNREADABLE_FACE, FaceOnPicture, Likeness,
                                    LikenessMatch)
from registry import SubjectKind


TURNED_LONG_SIDE = 1600  # px: the largest side of the turned copies of a reference image (_faces_at_any_turn)


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


def scan_picture(rgb: np.ndarray, likeness: Likeness) -> list[OutputFinding]:
    """Every face on one picture (a reference image): each subject it shows, with its best similarity, then each
    face that matches nobody enrolled, as an UNKNOWN_FACE or UNREADABLE_FACE finding. Faces are looked for even
    when nobody is enrolled, since a face nobody consented for is refused too."""
    best: dict[tuple[str, str], OutputFinding] = {}
    unmatched: list[OutputFinding] = []
    for face in _faces_at_any_turn(rgb, likeness):
        if not face.matches:
            unmatched.append(OutputFinding(face.as_unmatched(), 0, 0.0))
        for match in face.matches:
            key = (match.kind, match.subject_id)
            if key not in best or match.similarity > best[key].match.similarity:
                best[key] = OutputFinding(match, 0, 0.0)
    return [*sorted(best.values(), key=lambda finding: -finding.match.similarity), *unmatched]


def _faces_at_any_turn(rgb: np.ndarray, likeness: Likeness) -> list[FaceOnPicture]:
    """The faces on the picture as it is and turned by each quarter turn, with boxes in the picture's own
    coordinates. The face detector finds upright faces only, so a registered person's photo turned on its side or
    upside down passed the check (an image-to-video model turns it back). On a turned copy a face counts when it
    matches someone enrolled or is a confident detection (SECOND_FACE_SCORE): the detector's weak hits on patterns
    in a turned picture are not taken for unknown faces, which would deny ordinary pictures. The turned copies are
    looked at no larger than TURNED_LONG_SIDE: a 4000x3000 photo's three turns took 1.28 s at full size, 0.79 s so
    (a face a model could turn back is large in the picture)."""
    height, width = rgb.shape[:2]
    faces = list(likeness.identify_faces(rgb))
    scale = min(1.0, TURNED_LONG_SIDE / max(height, width))
    small = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                                                interpolation=cv2.INTER_AREA)
    for turns in (1, 2, 3):
        for face in likeness.identify_faces(np.ascontiguousarray(np.rot90(small, turns))):
            if face.matches or face.score >= SECOND_FACE_SCORE:
                box = _scaled(_unturned(face.box, turns, small.shape[1], small.shape[0]), 1.0 / scale, width, height)
                faces.append(replace(face, box=box, matches=[replace(m, box=box) for m in face.matches]))
    return faces


def _scaled(box: Box, factor: float, width: int, height: int) -> Box:
    if factor == 1.0:
        return box
    return Box(max(0, int(box.left * factor)), max(0, int(box.top * factor)), min(width, int(box.right * factor)),
               min(height, int(box.bottom * factor)))


def _unturned(box: Box, turns: int, width: int, height: int) -> Box:
    """A box found on np.rot90(picture, turns) (counter-clockwise quarter turns) in the picture's coordinates."""
    if turns == 1:  # turned pixel (row i, col j) is the picture's (row j, col width-1-i)
        return Box(width - box.bottom, box.left, width - box.top, box.right)
    if turns == 2:
        return Box(width - box.right, height - box.bottom, width - box.left, height - box.top)
    return Box(box.top, height - box.right, box.bottom, height - box.left)  # 3: (row i, col j) is (height-1-j, i)


def hidden_cameo_findings(decision: Decision, findings: list[OutputFinding],
                          visible_cameos: frozenset[str] | set[str]) -> list[OutputFinding]:
    """The cameos found whose use the gate refused and which the requester may not see (not theirs, not shared
    with them): a denial may say that such a person is there, never who, nor how alike."""
    refused = {reason.subject for reason in decision.reasons if reason.subject}
    return [finding for finding in findings if finding.match.kind == SubjectKind.cameo
            and finding.match.label in refused and finding.match.subject_id not in visible_cameos]


def output_decision(decision: Decision, findings: list[OutputFinding], requested_handles: set[str],
                    protected_cameos: dict[str, str] | None = None, *, where: str = "generated video",
                    visible_cameos: frozenset[str] | set[str] = frozenset(), reveal: bool = False) -> Decision:
    """The decision once faces are known. `decision` is the gate's answer for the request with every matched
    cameo's handle added (the gate alone decides who may use a cameo). `where` names the picture the faces were
    found on ("generated video": the clip is withheld; "reference image": the request is denied).

    - A refused cameo the requester may not see (`visible_cameos`: the found cameos they own or that are shared
      with them) becomes one `likeness_without_consent` that names nobody and gives no id, score or box, whether
      or not the request also named a handle (else comparing answers would tell whose face it is); its gate
      reasons are dropped unless the request named that handle. With `reveal` (an operator), the details stay.
    - A refused cameo the requester may see keeps the gate's own reasons (restricted content, expiry, ...).
    - Every protected person on screen is refused unless their own cameo (`protected_cameos`: protected person
      id -> cameo id) is among the cameos the gate consented to.
    - A face on the reference image that matches nobody is refused (`likeness_unregistered`), and so is one that
      cannot be compared (`likeness_unrecognisable`): nobody's likeness is used without their verified cameo."""
    outcome = "it is withheld" if where == "generated video" else "the request is denied"
    hidden = hidden_cameo_findings(decision, findings, visible_cameos)
    hidden_labels = {finding.match.label for finding in hidden}
    reasons = [reason for reason in decision.reasons
               if reason.subject not in hidden_labels or reason.subject[1:] in requested_handles]
    for finding in hidden:
        gate_codes = [reason.code for reason in decision.reasons if reason.subject == finding.match.label]
        reasons.append(Reason(
            "likeness_without_consent",
            f"The {where} shows the likeness of a registered person who has not allowed you to use it; "
            f"{outcome}. Only they can allow it, by sharing their cameo with you.",
            evidence={**finding.as_dict(), "gate_reasons": gate_codes} if reveal else None))
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
            subject=f"protected:{finding.match.label}", evidence=finding.as_dict() if reveal else None))
    reasons += [_unmatched_reason(finding, outcome) for finding in findings
                if finding.match.kind in (UNKNOWN_FACE, UNREADABLE_FACE)]
    return Decision(allowed=not reasons, reasons=reasons, policy_version=decision.policy_version,
                    obligations=decision.obligations, cameo_ids=decision.cameo_ids if not reasons else [])


def _unmatched_reason(finding: OutputFinding, outcome: str) -> Reason:
    """Unmatched faces only come from reference images (an unknown face the model draws on its own is nobody)."""
    box = {"box": finding.match.box.as_list()} if finding.match.box else None
    if finding.match.kind == UNREADABLE_FACE:
        return Reason(
            "likeness_unrecognisable",
            f"The reference image shows {finding.match.label}, so it cannot be checked against the registered "
            f"cameos and could be anyone's; {outcome}. Use a sharp picture in which each face is at least "
            f"{MIN_COMPARABLE_FACE} pixels wide, or one without faces.",
            evidence=box)
    return Reason(
        "likeness_unregistered",
        f"The reference image shows the face of a person who has no verified cameo you may use; {outcome}. "
        "Nobody's likeness is generated without their consent: that person must register a cameo and allow you "
        "to use it.",
        evidence=box)
