"""The face models: dlib's HOG face detector (inside dlib) and the 68-point landmark predictor and ResNet face
embedder that ship inside the `face-recognition-models` wheel. Nothing is downloaded.

`face_recognition_models/__init__.py` imports `pkg_resources`, which setuptools >= 81 no longer provides, so the
package is never imported here: its files are located through the installed distribution's metadata
(`importlib.metadata`), falling back to the package directory found by `importlib.util.find_spec` (which locates a
package without running its `__init__`)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

from guard.errors import HallmarkError

DISTRIBUTION = "face-recognition-models"
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
EMBEDDER = "dlib_face_recognition_resnet_model_v1.dat"


class FaceModelsMissing(HallmarkError):
    code = "face_models_missing"
    status = 503


def model_path(file_name: str) -> Path:
    """Where an installed model file of `face-recognition-models` is, without importing the package."""
    try:
        for entry in importlib.metadata.files(DISTRIBUTION) or []:
            if entry.name == file_name:
                located = Path(str(entry.locate()))
                if located.is_file():
                    return located
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("face_recognition_models")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "models" / file_name
        if candidate.is_file():
            return candidate
    raise FaceModelsMissing(
        f"The face model file {file_name} is not installed.",
        hint="Install the face models that ship their weights: pip install dlib-bin face-recognition-models.",
    )


@dataclass(frozen=True)
class FaceModels:
    detector: object  # dlib.fhog_object_detector
    landmarks: object  # dlib.shape_predictor (68 points)
    embedder: object  # dlib.face_recognition_model_v1 (128-d)


_models: FaceModels | None = None
_load_lock = threading.Lock()


def face_models() -> FaceModels:
    """The models, loaded once per process (about a second: the landmark predictor alone is ~100 MB)."""
    global _models
    with _load_lock:
        if _models is None:
            try:
                import dlib
            except ImportError as exc:
                raise FaceModelsMissing("dlib is not installed.", hint="pip install dlib-bin") from exc
            _models = FaceModels(
                detector=dlib.get_frontal_face_detector(),
                landmarks=dlib.shape_predictor(str(model_path(LANDMARKS_68))),
                embedder=dlib.face_recognition_model_v1(str(model_path(EMBEDDER))),
            )
        return _models
