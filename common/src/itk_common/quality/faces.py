"""Faces through dlib: HOG detection, 68 landmarks, 128-d embeddings.

The models are the files of the `face-recognition-models` package. Its `__init__` imports
`pkg_resources`, which current setuptools no longer ships, so the folder is found without importing it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np

LANDMARKS_MODEL = "shape_predictor_68_face_landmarks.dat"
EMBEDDING_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
# dlib's embeddings are trained so that two pictures of one person lie closer than this.
SAME_PERSON_DISTANCE = 0.6
# 68-point layout (iBUG 300-W): inner lip pairs, mouth corners, eyes.
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)


class FaceModelsMissingError(RuntimeError):
    pass


def models_folder() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsMissingError("the face-recognition-models package is not installed "
                                     "(pip install 'itk-common[quality]')")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (LANDMARKS_MODEL, EMBEDDING_MODEL):
        if not (folder / name).is_file():
            raise FaceModelsMissingError(f"{folder / name} is missing; reinstall face-recognition-models")
    return folder


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # left, top, right, bottom (pixels)
    landmarks: np.ndarray  # [68, 2] float
    shape: dlib.full_object_detection

    @property
    def eye_distance(self) -> float:
        left = self.landmarks[LEFT_EYE].mean(axis=0)
        right = self.landmarks[RIGHT_EYE].mean(axis=0)
        return float(np.linalg.norm(left - right))

    def lip_gap(self) -> float:
        """Inner-lip opening in eye distances (0 when closed), independent of the face's size."""
        gaps = [np.linalg.norm(self.landmarks[a] - self.landmarks[b]) for a, b in INNER_LIP_PAIRS]
        return float(np.mean(gaps)) / max(self.eye_distance, 1.0)

    def mouth_region(self, height: int, width: int) -> tuple[int, int, int, int]:
        """From under the nose (33) to the chin (8), between the mouth corners widened by a quarter."""
        points = self.landmarks
        left, right = points[48, 0], points[54, 0]
        margin = 0.25 * (right - left)
        top, bottom = points[33, 1], points[8, 1]
        return (max(0, int(left - margin)), max(0, int(top)),
                min(width, int(right + margin) + 1), min(height, int(bottom) + 1))

    def face_region(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The landmarks' bounding box: brows to chin, jaw side to jaw side."""
        low = self.landmarks.min(axis=0)
        high = self.landmarks.max(axis=0)
        return (max(0, int(low[0])), max(0, int(low[1])), min(width, int(high[0]) + 1),
                min(height, int(high[1]) + 1))


class FaceModels:
    """dlib's detector, landmark predictor and embedding network, loaded once (about 0.7 s)."""

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or models_folder()
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(folder / LANDMARKS_MODEL))
        self.encoder = dlib.face_recognition_model_v1(str(folder / EMBEDDING_MODEL))

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> tuple[int, int, int, int] | None:
        """The largest frontal face, or None."""
        found = self.detector(rgb, upsample)
        if not found:
            return None
        best = max(found, key=lambda rect: rect.area())
        return best.left(), best.top(), best.right(), best.bottom()

    def detect_near(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        """The largest face within the box's surroundings (half its size on every side): a video's
        face moves little between two detections, and a search there costs a fraction of the frame's."""
        height, width = rgb.shape[:2]
        left, top, right, bottom = box
        margin_x, margin_y = (right - left) // 2, (bottom - top) // 2
        x0, y0 = max(0, left - margin_x), max(0, top - margin_y)
        x1, y1 = min(width, right + margin_x), min(height, bottom + margin_y)
        found = self.detect(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        if found is None:
            return None
        return found[0] + x0, found[1] + y0, found[2] + x0, found[3] + y0

    def landmarks(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> Face:
        shape = self.predictor(rgb, dlib.rectangle(*box))
        points = np.array([[point.x, point.y] for point in shape.parts()], dtype=np.float64)
        return Face(box=box, landmarks=points, shape=shape)

    def embedding(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        return np.asarray(self.encoder.compute_face_descriptor(rgb, face.shape), dtype=np.float64)

    def find(self, rgb: np.ndarray) -> Face | None:
        """Detection plus landmarks; a still picture is tried once more at double size."""
        box = self.detect(rgb) or self.detect(rgb, upsample=1)
        return None if box is None else self.landmarks(rgb, box)
