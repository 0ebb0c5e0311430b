"""Likeness: faces found, recognised and matched against every verified cameo and protected person.

    analysis      detection, 68 landmarks, head pose, 128-d embeddings (dlib models from inside their wheels)
    video         one pass over a registration video: faces and poses per sampled frame, a few embeddings
    liveness      the live challenge (random head movements) and reading the order a video shows
    registration  the checks a registration must pass, each failure with its reason
    sealing       AES-GCM sealing of templates at rest
    index         the exact in-memory search over all templates
    service       `Likeness`: enrol, erase, keep the index fresh across processes, `match_faces(rgb)`
    output        the output check on generated frames and the release decision it feeds
"""

from guard.likeness.service import DEFAULT_THRESHOLD, Likeness, LikenessMatch

__all__ = ["DEFAULT_THRESHOLD", "Likeness", "LikenessMatch"]
