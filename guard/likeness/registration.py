"""The checks a registration video (or an operator's reference images) must pass, each failure with its reason,
and the template that is enrolled when they all pass. Nothing here touches storage: the caller stores the template
only when the failure list is empty.

Identity is the same throughout when the embeddings of the clear frames do not split into two groups that would
not match each other: a two-means split whose centroids are less similar than the match threshold means two
people (measured on the real signers: one person's split stays >= 0.97, a mix of two people <= 0.955)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guard.errors import UnsupportedMedia
from guard.likeness.analysis import FaceObservation, analyze
from guard.likeness.liveness import Move, observed_moves
from guard.likeness.video import RECOGNISABLE_SCORE, VideoFaces, people_in

MIN_SECONDS = 1.0
ONE_FACE_RATIO = 0.90
MIN_RECOGNISABLE_FRAMES = 3
STATIC_MOTION = 0.25  # mean luma change (0..255) between sampled frames; a re-encoded photo stays below 0.05


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    details: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


@dataclass
class Verdict:
    failures: list[Failure]
    template: np.ndarray | None  # unit 128-d; None when a failure prevents one
    summary: dict[str, Any] = field(default_factory=dict)  # counts and moves, never biometric data

    @property
    def passed(self) -> bool:
        return not self.failures and self.template is not None


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def template_of(embeddings: np.ndarray) -> np.ndarray:
    return unit(np.asarray(embeddings, dtype=np.float32).mean(axis=0))


def identity_split(embeddings: np.ndarray, iterations: int = 10) -> float:
    """Similarity of the two centroids of a two-means split (1.0 when the faces do not split at all). Seeded with
    the two least similar faces, so a minority of frames showing someone else becomes its own group."""
    vectors = np.asarray(embeddings, dtype=np.float32)
    if len(vectors) < 2:
        return 1.0
    similarity = vectors @ vectors.T
    first, second = np.unravel_index(int(np.argmin(similarity)), similarity.shape)
    centroids = np.stack([vectors[first], vectors[second]])
    for _ in range(iterations):
        labels = np.argmax(vectors @ centroids.T, axis=1)
        if labels.min() == labels.max():
            return 1.0
        centroids = np.stack([unit(vectors[labels == group].mean(axis=0)) for group in (0, 1)])
    return float(centroids[0] @ centroids[1])


def check_video(faces: VideoFaces, *, challenge: list[Move] | None, threshold: float,
                max_seconds: float) -> Verdict:
    """Every check a registration video must pass; `challenge` None for operator enrollment (consent was
    collected offline, so no live answer is asked for)."""
    failures: list[Failure] = []
    analyzed = len(faces.frames)
    summary: dict[str, Any] = {"duration_seconds": round(faces.duration, 2), "frames_analyzed": analyzed}
    if faces.is_still_picture:
        return Verdict([Failure("not_a_video", "The upload is a single still picture, not a video.",
                                {"container": faces.info.container, "frames": faces.decoded_frames})],
                       None, summary)
    if faces.duration > max_seconds or faces.truncated:
        failures.append(Failure("too_long", f"The video lasts {faces.duration:.1f} s; at most {max_seconds:g} s "
                                "are accepted.", {"duration_seconds": round(faces.duration, 2)}))
        if not faces.frames:  # not analysed at all
            return Verdict(failures, None, summary)
    if faces.duration < MIN_SECONDS:
        failures.append(Failure("too_short", f"The video lasts {faces.duration:.2f} s; at least {MIN_SECONDS:g} s "
                                "are needed.", {"duration_seconds": round(faces.duration, 2)}))
    one, none, many = faces.count(1), faces.count(0), faces.multi_face_frames
    ratio = one / analyzed if analyzed else 0.0
    summary.update(one_face_ratio=round(ratio, 3), frames_without_face=none, frames_with_several_faces=many)
    if ratio < ONE_FACE_RATIO:
        details = {"one_face_ratio": round(ratio, 3), "frames_analyzed": analyzed, "frames_without_face": none,
                   "frames_with_several_faces": many}
        if many and many >= none:
            failures.append(Failure("multiple_faces", f"{many} of {analyzed} frames show more than one face; one "
                                    "person must be alone in the picture.", details))
        else:
            failures.append(Failure("no_face", f"A single face was found in {ratio:.0%} of the frames; at least "
                                    f"{ONE_FACE_RATIO:.0%} are needed.", details))
    motions = [frame.motion for frame in faces.frames[1:]]
    summary["motion"] = round(max(motions), 3) if motions else 0.0
    if motions and max(motions) < STATIC_MOTION:
        failures.append(Failure("static_image", "Nothing moves between the frames: this is a still picture "
                                "made into a video, not a live recording.", {"max_motion": round(max(motions), 3)}))
    if challenge is not None:
        observed = observed_moves(faces.frames)
        summary["observed_moves"] = [str(move) for move in observed]
        if observed != list(challenge):
            failures.append(Failure(
                "wrong_moves", "The head movements do not follow the challenge: expected "
                f"{_moves(challenge)}, saw {_moves(observed) or 'no movement'}.",
                {"expected": [str(m) for m in challenge], "observed": [str(m) for m in observed]}))
    template = None
    embeddings = faces.embeddings
    summary["recognisable_frames"] = len(embeddings)
    if len(embeddings) < MIN_RECOGNISABLE_FRAMES:
        if not any(f.code in ("no_face", "multiple_faces") for f in failures):
            failures.append(Failure("face_not_recognisable", "The face is too small, blurred, covered or turned "
                                    "away in too many frames to be recognised.",
                                    {"recognisable_frames": len(embeddings)}))
    else:
        split = identity_split(embeddings)
        summary["identity_split_similarity"] = round(split, 3)
        if split < threshold:
            failures.append(Failure("identity_changes", "The face does not stay the same person throughout the "
                                    "video.", {"split_similarity": round(split, 3), "threshold": threshold}))
        else:
            template = template_of(embeddings)
    return Verdict(failures, template if not failures else None, summary)


def _moves(moves: list[Move]) -> str:
    return ", ".join(str(move).replace("_", " ") for move in moves)


# --- still images (operator enrollment, protected persons) -----------------------------------------------------
def read_image(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise UnsupportedMedia(f"No such image file: {path}", hint="Check the path.")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise UnsupportedMedia(f"{path.name} is not an image we can read ({exc}).",
                               hint="Use a JPEG, PNG or WebP photo.") from exc


def check_image(rgb: np.ndarray, name: str) -> tuple[np.ndarray | None, list[Failure]]:
    """One clear face in the picture → its embedding; otherwise the reasons."""
    faces: list[FaceObservation] = people_in(analyze(rgb))
    if not faces:
        return None, [Failure("no_face", f"No face was found in {name}.")]
    if len(faces) > 1:
        return None, [Failure("multiple_faces", f"{name} shows {len(faces)} faces; use a picture of one person.")]
    if faces[0].score < RECOGNISABLE_SCORE:
        return None, [Failure("face_not_recognisable", f"The face in {name} is too small, blurred, covered or "
                              "turned away to be recognised.", {"detector_score": round(faces[0].score, 2)})]
    assert faces[0].embedding is not None
    return faces[0].embedding, []
