"""Likeness matching over everything enrolled: cameos and protected persons.

`Likeness` keeps one in-memory `FaceIndex` per process over the decrypted templates and refreshes it when the
database's face-index version moves (every template insert or erasure bumps it in the same transaction), so several
API workers and generation workers on SQLite or PostgreSQL all see enrolments and erasures at their next check.
A refresh reads only the rows it has not seen (and drops the rows that are gone); it does not re-decrypt the rest.

`match_faces(rgb)` is the narrow interface the output check (generated frames) and the impersonation check use;
`identify_faces(rgb)` answers for every face, matched or not, as the reference-image check needs."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlmodel import Session

from guard.likeness.analysis import (SECOND_FACE_SCORE, Box, analyze, detect_blurred, face_sharpness, overlaps,
                                     same_place)
from guard.likeness.index import Entry, FaceIndex, Hit
from guard.likeness.sealing import TemplateSealer
from registry import Cameos, Database, FaceTemplates, ProtectedPersons, SubjectKind

DEFAULT_THRESHOLD = 0.96  # cosine similarity of unit dlib embeddings; chosen in bench/faces.py (BENCHMARKS.md)
# Below these a face's embedding is not reliable enough to say whose it is (dlib's ResNet aligns a 150 px chip):
# smaller faces are mostly upscaled blur, and a sigma-3 blur of a real 62 px face (sharpness 4-10, against 20-150
# as filmed) already stops it matching its own cameo. See analysis.face_sharpness.
MIN_COMPARABLE_FACE = 40  # px, the face box's shorter side
MIN_FACE_SHARPNESS = 12.0

# LikenessMatch.kind of a face that matches no enrolled subject (besides SubjectKind.cameo and .protected).
UNKNOWN_FACE = "unknown"  # compared, and like nobody enrolled
UNREADABLE_FACE = "unreadable"  # too small or too blurred to compare: it could be anyone


@dataclass(frozen=True)
class LikenessMatch:
    kind: str  # "cameo" | "protected"; on a reference image also UNKNOWN_FACE | UNREADABLE_FACE (no subject)
    subject_id: str  # the cameo id or the protected person id
    label: str  # "@handle" for a cameo, the name for a protected person
    similarity: float
    box: Box | None  # where the face is in the picture (None when matching a template, not a picture)

    @property
    def cameo_id(self) -> str | None:
        return self.subject_id if self.kind == SubjectKind.cameo else None

    @property
    def handle(self) -> str | None:
        return self.label.lstrip("@") if self.kind == SubjectKind.cameo else None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject_id": self.subject_id, "label": self.label,
                "similarity": round(self.similarity, 4), "box": self.box.as_list() if self.box else None}


@dataclass(frozen=True)
class FaceOnPicture:
    """One face found on a picture and everything enrolled it matches."""

    box: Box
    matches: list[LikenessMatch]  # best first; empty when the face is like nobody enrolled
    unreadable: str | None  # why the face cannot be compared ("too small", "too blurred"), None when it can
    score: float  # detector margin: the higher of the picture's and its sharpened copy's (analysis.detect_blurred)

    def as_unmatched(self) -> LikenessMatch:
        """This face as a match with no subject (UNREADABLE_FACE or UNKNOWN_FACE), for a face that matched nobody."""
        if self.unreadable:
            return LikenessMatch(UNREADABLE_FACE, "", f"a face {self.unreadable} to recognise", 0.0, self.box)
        return LikenessMatch(UNKNOWN_FACE, "", "a face that matches no cameo", 0.0, self.box)


TOO_BLURRED = "too blurred"


def unreadable_because(rgb: np.ndarray, box: Box) -> str | None:
    if min(box.width, box.height) < MIN_COMPARABLE_FACE:
        return "too small"
    if face_sharpness(rgb, box) < MIN_FACE_SHARPNESS:
        return TOO_BLURRED
    return None


def shown_faces(faces: list[FaceOnPicture]) -> list[FaceOnPicture]:
    """The detections that are faces: any that matches someone enrolled, the picture's best detection (a lone
    low-margin box may be a face blurred past recognition: it fails closed), and further ones only at or above
    SECOND_FACE_SCORE, as in a registration video (video.people_in). HOG also fires on patterns (the mission patch
    on skimage's astronaut, at 0.06-0.18): counted, such a box denied a picture of a registered person as an
    unregistered face. A face too blurred to compare always counts, whatever its score: blurring scores a real face
    0.0-0.3 too (a stranger blurred beside a sharp cameo scored 0.22), and blurring is how a face would be slipped
    past the check; the patch, sharp enough to compare, is judged by its score."""
    best = max((face.score for face in faces), default=0.0)
    return [face for face in faces
            if face.matches or face.unreadable == TOO_BLURRED or face.score >= min(best, SECOND_FACE_SCORE)]


def subject_ref(kind: str, subject_id: str) -> str:
    """What a sealed template is bound to (AES-GCM associated data)."""
    return f"{kind}:{subject_id}"


class Likeness:
    def __init__(self, db: Database, sealer: TemplateSealer, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.db = db
        self.sealer = sealer
        self.threshold = threshold
        self.index = FaceIndex()
        self._version: int | None = None
        self._sync_lock = threading.Lock()

    # --- enrolment (in the caller's transaction, so templates and the cameo's status commit together)
    def enroll(self, session: Session, kind: SubjectKind, subject_id: str, templates: list[np.ndarray],
               source: str) -> int:
        repository = FaceTemplates(session)
        for template in templates:
            repository.add(kind, subject_id, self.sealer.seal(template, subject_ref(kind, subject_id)),
                           self.sealer.key_id, source)
        return len(templates)

    def erase(self, session: Session, kind: SubjectKind, subject_id: str) -> int:
        return FaceTemplates(session).erase(kind, subject_id)

    # --- the index
    def sync(self) -> None:
        """Bring the index up to date with the database (a no-op unless the face-index version moved)."""
        with self.db.session() as session:
            repository = FaceTemplates(session)
            version = repository.version()
            if version == self._version:
                return
            with self._sync_lock:
                if version == self._version:
                    return
                stored = set(repository.seqs())
                loaded = self.index.seqs()
                new = sorted(stored - loaded)
                entries = [Entry(row.seq or 0, row.subject_kind, row.subject_id,
                                 self.sealer.open(row.sealed, subject_ref(row.subject_kind, row.subject_id),
                                                  row.key_id))
                           for row in repository.by_seqs(new)]
                self.index.apply(loaded - stored, entries)
                self._version = version

    @property
    def enrolled(self) -> int:
        """How many templates are enrolled (after bringing the index up to date)."""
        self.sync()
        return len(self.index)

    def search(self, embeddings: np.ndarray, threshold: float | None = None) -> list[list[Hit]]:
        """For each embedding, every enrolled subject at or above the threshold (best template per subject)."""
        self.sync()
        results = []
        for hits in self.index.search_above(embeddings, self.threshold if threshold is None else threshold):
            best: dict[tuple[str, str], Hit] = {}
            for hit in hits:
                key = (hit.subject_kind, hit.subject_id)
                if key not in best or hit.similarity > best[key].similarity:
                    best[key] = hit
            results.append(sorted(best.values(), key=lambda hit: -hit.similarity))
        return results

    def match_embeddings(self, embeddings: np.ndarray, boxes: list[Box | None] | None = None,
                         threshold: float | None = None) -> list[LikenessMatch]:
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, 128)
        if len(embeddings) == 0:
            return []
        boxes = boxes or [None] * len(embeddings)
        found = [(hit, boxes[number]) for number, hits in enumerate(self.search(embeddings, threshold))
                 for hit in hits]
        if not found:
            return []
        with self.db.session() as session:
            handles = Cameos(session).handles([h.subject_id for h, _ in found if h.subject_kind == SubjectKind.cameo])
            names = ProtectedPersons(session).names(
                [h.subject_id for h, _ in found if h.subject_kind == SubjectKind.protected])
        matches = []
        for hit, box in found:
            if hit.subject_kind == SubjectKind.cameo:
                label = f"@{handles[hit.subject_id]}" if hit.subject_id in handles else None
            else:
                label = names.get(hit.subject_id)
            if label is not None:  # a subject deleted since the index refreshed: its templates are gone too
                matches.append(LikenessMatch(hit.subject_kind, hit.subject_id, label, hit.similarity, box))
        return sorted(matches, key=lambda match: -match.similarity)

    def match_faces(self, rgb: np.ndarray) -> list[LikenessMatch]:
        """Every face in the picture matched against every cameo and protected person: one entry per (face,
        subject) at or above the threshold, best first. No faces, or no matches: an empty list."""
        faces = [face for face in analyze(rgb) if face.embedding is not None]
        if not faces:
            return []
        return self.match_embeddings(np.stack([face.embedding for face in faces]), [face.box for face in faces])

    def identify_faces(self, rgb: np.ndarray) -> list[FaceOnPicture]:
        """Every face in the picture (see shown_faces), each with the subjects it matches and whether it could be
        compared at all. Faces are looked for even when nobody is enrolled: a face that matches nobody is an answer
        too."""
        faces = analyze(rgb)
        sharpened = detect_blurred(rgb)
        comparable = [face for face in faces if face.embedding is not None]
        matches = self.match_embeddings(np.stack([face.embedding for face in comparable]),
                                        [face.box for face in comparable]) if comparable else []
        found = [FaceOnPicture(face.box, [match for match in matches if match.box == face.box],
                               "too unclear" if face.embedding is None else unreadable_because(rgb, face.box),
                               max([face.score, *(score for box, score in sharpened if same_place(box, face.box))]))
                 for face in faces]
        blurred = [(box, score) for box, score in sharpened if not any(overlaps(box, face.box) for face in faces)]
        return shown_faces([*found, *(FaceOnPicture(box, [], TOO_BLURRED, score) for box, score in blurred)])
