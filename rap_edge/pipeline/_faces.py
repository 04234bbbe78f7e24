"""The face path's models: SSD detector, dlib 5-point landmarks, aligned chip, face embedder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import ModelStoreError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from rap_edge.detect import Detection, ShapePredictor, SsdFaceDetector
    from rap_edge.memory import Memory
    from rap_edge.models import Encoder
    from rap_edge.runtime import Provider

__all__ = ["FACE_CATEGORIES", "FaceEmbedder", "FaceModels", "embed_faces_in_memory"]

# Memory categories whose concepts are recognised by face (others go to the object path).
FACE_CATEGORIES = frozenset({"person", "face", "people", "human"})
DETECTOR = "res10_ssd.json"
LANDMARKS = "dlib_shape_5.json"
EMBEDDER = "dlib_resnet.json"
CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass
class FaceModels:
    """The three face models, loaded from a folder of exported manifests (``make models``).

    Attributes:
        detector: Face boxes.
        landmarks: 5 points per box (mapped from the detector's box convention).
        encoder: 128-d identity descriptor of the aligned chip.
    """

    detector: SsdFaceDetector
    landmarks: ShapePredictor
    encoder: Encoder

    @classmethod
    def load(cls, model_dir: str | Path, *, encoder: str = EMBEDDER,
             provider: Provider = "auto") -> FaceModels:
        """Load ``res10_ssd.json``, ``dlib_shape_5.json`` and ``encoder`` from ``model_dir``.

        Args:
            model_dir: Folder of exported manifests (default store: ``<store>/onnx``).
            encoder: Manifest file name (or path) of the face embedder, e.g. the INT8
                ``dlib_resnet.int8-qdq.json``; its vectors get their own index.
            provider: Execution provider for the ONNX models.

        Raises:
            ModelStoreError: naming the file when a model is missing, damaged or mismatched.
        """
        from rap_edge.detect import ShapePredictor, SsdFaceDetector  # noqa: PLC0415
        from rap_edge.models import Encoder  # noqa: PLC0415

        folder = Path(model_dir).expanduser()
        if not folder.is_dir():
            msg = f"{folder}: model folder not found (run `make models`, or pass --models DIR)"
            raise ModelStoreError(msg)
        enc_path = Path(encoder) if Path(encoder).is_absolute() else folder / encoder
        models = cls(
            detector=SsdFaceDetector(folder / DETECTOR, provider=provider),
            landmarks=ShapePredictor(folder / LANDMARKS),
            encoder=Encoder(enc_path, provider=provider),
        )
        models.landmarks.box_map(models.detector.manifest.name)  # fail now if not fitted
        return models

    @property
    def encoder_id(self) -> str:
        """Id of the face vectors."""
        return self.encoder.encoder_id

    def landmarks_for(self, image: npt.NDArray[np.uint8], boxes: Sequence[npt.ArrayLike]
                      ) -> npt.NDArray[np.float32]:
        """5 landmarks per detector box, [len(boxes), 5, 2]."""
        return self.landmarks.predict_many(image, boxes, detector=self.detector.manifest.name)

    @staticmethod
    def chip(image: npt.NDArray[np.uint8], landmarks: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """The aligned 150x150 chip the embedder expects."""
        from rap_edge.detect import align_face  # noqa: PLC0415

        return align_face(image, landmarks, size=CHIP_SIZE, padding=CHIP_PADDING)


def largest(detections: Sequence[Detection]) -> Detection | None:
    """The detection with the largest box (the subject of a reference photo)."""
    if not detections:
        return None
    return max(detections, key=lambda d: (d.x2 - d.x1) * (d.y2 - d.y1))


class FaceEmbedder:
    """Implements the memory's ``Embedder`` for face concepts: largest face -> aligned chip.

    A reference photo with no detected face is taken as a face crop (its whole frame is used as
    the face box); :attr:`fallbacks` counts those.
    """

    def __init__(self, models: FaceModels) -> None:
        self.models = models
        self.fallbacks = 0

    @property
    def encoder_id(self) -> str:
        return self.models.encoder_id

    @property
    def dim(self) -> int:
        return self.models.encoder.dim

    def chips(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[npt.NDArray[np.uint8]]:
        """The aligned chip of each image's largest face."""
        out = []
        for img in images:
            face = largest(self.models.detector.detect(img))
            box = np.array([0, 0, img.shape[1] - 1, img.shape[0] - 1], dtype=np.float64)
            if face is None:
                self.fallbacks += 1
            else:
                box = face.box.astype(np.float64)
            out.append(self.models.chip(img, self.models.landmarks_for(img, [box])[0]))
        return out

    def embed(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        return self.models.encoder.embed(self.chips(images))


def embed_faces_in_memory(memory: Memory, embedder: FaceEmbedder, *, batch_size: int = 16
                          ) -> int:
    """Embed the pending images of face concepts (categories in :data:`FACE_CATEGORIES`).

    Only those concepts get face vectors: a mug's photo never enters the face index. Returns
    the number of images embedded.
    """
    import cv2  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from rap_edge.errors import StoreError  # noqa: PLC0415

    faces = {c.id for c in memory.list_concepts() if c.category in FACE_CATEGORIES}
    todo = [r for r in memory.pending(embedder.encoder_id) if r.concept_id in faces]
    with tqdm(total=len(todo), desc="embedding faces", unit="img", disable=None) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            pixels: list[npt.NDArray[np.uint8]] = []
            for rec in batch:
                img = cv2.imread(str(rec.path), cv2.IMREAD_COLOR)
                if img is None:
                    msg = f"stored image {rec.path} is missing or corrupt; run `verify`"
                    raise StoreError(msg)
                pixels.append(np.asarray(img, dtype=np.uint8))
            memory.set_vectors([r.id for r in batch], embedder.embed(pixels),
                               encoder=embedder.encoder_id)
            bar.update(len(batch))
    return len(todo)
