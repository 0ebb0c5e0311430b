"""Face analysis of one RGB picture: detection, 68 landmarks, head pose and a 128-d identity embedding.

Detection is dlib's HOG frontal face detector (it covers roughly ±40° of yaw). Its smallest face is 80 px, so
pictures are first scaled so their long side is about 1280 px (at most 2x up): a face of 40 px in a 640 px frame is
found, and a 4K frame costs no more than a 1280 px one. Landmarks and embeddings are computed on the original
pixels. Embeddings (dlib's ResNet, LFW 99.38 %) are L2-normalised here, so that two faces compare by a dot product
(cosine similarity) and a search over many templates is one matrix product.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from guard.likeness.models import face_models

DETECT_LONG_SIDE = 1280
MAX_UPSCALE = 2.0
SMALLEST_DETECTABLE = 100.0  # px in the detection picture for the smallest face a caller expects (HOG window: 80)
EMBEDDING_DIM = 128
# A further detection in the same picture counts as another face only at or above this detector margin. Measured
# (max of the margins on the picture and on its sharpened copy, see detect_blurred): real faces in
# ../shared/media 0.38-2.6 as filmed (0.15-0.24 in a few frames turned far away), HOG false positives 0.06-0.22 (the
# mission patch on skimage's astronaut, a coin in skimage's coins, a shirt in asl-help.mkv). A face blurred past
# recognition often scores below it too (0.0-0.3 at sigma 3-5), so a picture's best detection counts whatever its
# margin: a lone box may be a blurred face, and fails closed.
SECOND_FACE_SCORE = 0.3

# A generic 3D face (millimetre-ish units) in camera axes: x to the image's right, y down, z away from the camera.
# Facing the camera, the nose tip is nearest (z = 0). Points: nose tip, chin, outer eye corners (image left, image
# right), mouth corners (image left, image right); dlib's 68-point indices for the same points below.
_MODEL_POINTS = np.array([
    (0.0, 0.0, 0.0),
    (0.0, 330.0, 65.0),
    (-225.0, -170.0, 135.0),
    (225.0, -170.0, 135.0),
    (-150.0, 150.0, 125.0),
    (150.0, 150.0, 125.0),
], dtype=np.float64)
_LANDMARK_INDEX = [30, 8, 36, 45, 48, 54]


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


@dataclass(frozen=True)
class HeadPose:
    """Degrees. yaw > 0: the face turns towards the image's right (the person's own left in an unmirrored
    recording); pitch > 0: the face tilts up; roll > 0: the head leans towards the image's right."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class FaceObservation:
    box: Box
    score: float  # detector confidence (dlib's SVM margin; > 0 means detected)
    landmarks: np.ndarray  # (68, 2) float32, pixel coordinates
    pose: HeadPose
    embedding: np.ndarray | None  # (128,) float32, unit length; None when not asked for


_embed_lock = threading.Lock()  # dlib's DNN keeps per-call buffers in the network object: one call at a time
# dlib's HOG detector is not safe to share between threads either: run from four threads at once on the same frames,
# it gave other boxes in 175 of 460 calls (9 with a face missed) and once crashed the process. A detector is cheap to
# make (no weights to load), so each thread has its own and detection still runs in parallel.
_per_thread = threading.local()


def _detector():  # type: ignore[no-untyped-def]
    detector = getattr(_per_thread, "detector", None)
    if detector is None:
        import dlib

        face_models()  # the same clear error as elsewhere when dlib is missing
        detector = _per_thread.detector = dlib.get_frontal_face_detector()
    return detector


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB picture of shape (H, W, 3), got {image.shape}")
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        scale = 255.0 if image.max() <= 1.0 else 1.0
        image = np.clip(np.rint(image.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def detect(rgb: np.ndarray, *, smallest_face: float | None = None) -> list[tuple[Box, float]]:
    """Face boxes in original pixel coordinates, with detector scores, best first.

    `smallest_face` (pixels) lets a caller that knows how big the faces are (a video pass, from the previous
    frame) detect on a smaller picture: scaled so that such a face is 100 px, never more than the default scale.
    HOG cost grows with the pixel count, so a 300 px selfie face in a 1080p frame costs a fraction."""
    height, width = rgb.shape[:2]
    scale = min(MAX_UPSCALE, DETECT_LONG_SIDE / max(height, width))
    if smallest_face:
        scale = min(scale, max(SMALLEST_DETECTABLE / smallest_face, 1e-3))
    if abs(scale - 1.0) > 1e-3:
        interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
        work = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=interpolation)
    else:
        work, scale = rgb, 1.0
    rects, scores, _ = _detector().run(work, 0, 0.0)
    found = []
    for rect, score in zip(rects, scores):
        box = Box(max(0, int(rect.left() / scale)), max(0, int(rect.top() / scale)),
                  min(width, int(rect.right() / scale)), min(height, int(rect.bottom() / scale)))
        if box.width > 0 and box.height > 0:
            found.append((box, float(score)))
    return sorted(found, key=lambda item: -item[1])


def head_pose(landmarks: np.ndarray, width: int, height: int) -> HeadPose:
    """Yaw, pitch and roll from six landmarks and a generic 3D face (cv2.solvePnP), with a pinhole camera whose
    focal length is the picture's width: absolute angles are approximate, their signs and changes are reliable."""
    image_points = landmarks[_LANDMARK_INDEX].astype(np.float64)
    focal = float(width)
    camera = np.array([[focal, 0, width / 2.0], [0, focal, height / 2.0], [0, 0, 1]], dtype=np.float64)
    # Start from a face looking at the camera at the distance its size implies: from no guess, the iterative
    # solver sometimes lands on the mirrored, upside-down solution.
    eye_span = float(np.linalg.norm(image_points[3] - image_points[2])) or 1.0
    distance = focal * 450.0 / eye_span
    ok, rotation_vector, _ = cv2.solvePnP(_MODEL_POINTS, image_points, camera, np.zeros(4),
                                          rvec=np.zeros((3, 1)), tvec=np.array([[0.0], [0.0], [distance]]),
                                          useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return HeadPose(0.0, 0.0, 0.0)
    rotation, _ = cv2.Rodrigues(rotation_vector)
    # Angles from where the face points (its forward axis is -z in model space), not from an Euler
    # decomposition, which flips by 180 degrees near its singularities.
    forward = rotation @ np.array([0.0, 0.0, -1.0])
    across = rotation @ np.array([1.0, 0.0, 0.0])
    yaw = np.degrees(np.arctan2(forward[0], -forward[2]))
    pitch = np.degrees(np.arctan2(-forward[1], np.hypot(forward[0], forward[2])))
    roll = np.degrees(np.arctan2(across[1], across[0]))
    return HeadPose(yaw=float(yaw), pitch=float(pitch), roll=float(roll))


def _shape(box: Box, landmarks: np.ndarray):  # type: ignore[no-untyped-def]
    import dlib

    return dlib.full_object_detection(dlib.rectangle(box.left, box.top, box.right, box.bottom),
                                      [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks])


def embed(rgb: np.ndarray, box: Box, landmarks: np.ndarray) -> np.ndarray:
    """The unit-length 128-d embedding of the face at `box` with its 68 `landmarks` (dlib aligns a 150x150 chip
    from the landmarks, with 25 % padding, and runs the ResNet on it)."""
    models = face_models()
    with _embed_lock:
        descriptor = models.embedder.compute_face_descriptor(rgb, _shape(box, landmarks), 0, 0.25)
    vector = np.asarray(descriptor, dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


SHARPNESS_SIDE = 128  # px: faces are compared for sharpness at one size, near that of the embedder's 150 px chip


def face_sharpness(rgb: np.ndarray, box: Box) -> float:
    """How much fine detail the face at `box` has: the variance of the Laplacian of its grey pixels scaled to
    128 x 128. Measured on real 62-75 px faces (asl-*.mkv): 20-150 as filmed, 4-10 after a Gaussian blur of
    sigma 3, at which point their embeddings no longer match the same person's cameo."""
    grey = cv2.cvtColor(as_rgb_uint8(rgb), cv2.COLOR_RGB2GRAY)[box.top:box.bottom, box.left:box.right]
    if grey.size == 0:
        return 0.0
    scaled = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(scaled, cv2.CV_64F).var())


def detect_blurred(rgb: np.ndarray) -> list[tuple[Box, float]]:
    """Faces the detector finds only on a sharpened copy (an unsharp mask, sigma 4, amount 4): a face blurred
    past recognition (a Gaussian blur of sigma 4-6 on a real 62 px face) is still a face, and still someone's.
    Measured on real frames with no face (objects, streets, skimage's photos) it finds nothing more but a coin
    in skimage's coins (margin 0.22). Boxes with detector margins, best first."""
    rgb = as_rgb_uint8(rgb)
    sharpened = cv2.addWeighted(rgb, 5.0, cv2.GaussianBlur(rgb, (0, 0), 4.0), -4.0, 0)
    return detect(sharpened)


def overlaps(a: Box, b: Box) -> bool:
    return a.left < b.right and b.left < a.right and a.top < b.bottom and b.top < a.bottom


def same_place(a: Box, b: Box) -> bool:
    """Whether two detections are of the same thing: their intersection is at least half their union. (HOG's
    boxes for one face on a picture and on its sharpened copy differ by a few pixels; a false positive next to a
    face merely overlaps it.)"""
    width = min(a.right, b.right) - max(a.left, b.left)
    height = min(a.bottom, b.bottom) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return False
    inter = width * height
    return inter * 2 >= a.width * a.height + b.width * b.height - inter


@dataclass(frozen=True)
class FaceCrop:
    """Enough pixels around one face to embed it later (the aligned chip never reaches outside this crop), so a
    video pass can keep a few faces for embedding without keeping whole frames."""

    pixels: np.ndarray
    box: Box
    landmarks: np.ndarray

    def embedding(self) -> np.ndarray:
        return embed(self.pixels, self.box, self.landmarks)


def crop_face(rgb: np.ndarray, face: FaceObservation) -> FaceCrop:
    xs, ys = face.landmarks[:, 0], face.landmarks[:, 1]
    size = max(face.box.width, face.box.height, float(xs.max() - xs.min()), float(ys.max() - ys.min()))
    left = int(max(0, min(face.box.left, xs.min()) - size))
    top = int(max(0, min(face.box.top, ys.min()) - size))
    right = int(min(rgb.shape[1], max(face.box.right, xs.max()) + size))
    bottom = int(min(rgb.shape[0], max(face.box.bottom, ys.max()) + size))
    shift = np.array([left, top], dtype=np.float32)
    box = Box(face.box.left - left, face.box.top - top, face.box.right - left, face.box.bottom - top)
    return FaceCrop(np.ascontiguousarray(rgb[top:bottom, left:right]), box, face.landmarks - shift)


def analyze(rgb: np.ndarray, *, embed_faces: bool = True,
            smallest_face: float | None = None) -> list[FaceObservation]:
    """Every face in the picture, best detection first."""
    import dlib

    rgb = as_rgb_uint8(rgb)
    models = face_models()
    height, width = rgb.shape[:2]
    faces = []
    for box, score in detect(rgb, smallest_face=smallest_face):
        shape = models.landmarks(rgb, dlib.rectangle(box.left, box.top, box.right, box.bottom))
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        faces.append(FaceObservation(box=box, score=score, landmarks=points,
                                     pose=head_pose(points, width, height),
                                     embedding=embed(rgb, box, points) if embed_faces else None))
    return faces
