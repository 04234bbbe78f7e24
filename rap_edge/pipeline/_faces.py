"""The face path's models: SSD detector, dlib 5-point landmarks, aligned chip, face embedder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# embed_faces_in_memory moved to rap_edge.embed; still importable from here.
from rap_edge.embed import embed_faces_in_memory
from rap_edge.errors import ModelStoreError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from rap_edge.detect import Detection, ShapePredictor, SsdFaceDetector
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
# Least share of a detected box's area that must lie inside the frame (see FaceModels.detect).
MIN_INSIDE = 0.6
TILE_OVERLAP = 0.25  # share of a tile that overlaps its neighbour
EDGE_PX = 2  # a tile box this close to an inner tile edge is a cut face
TILE_MAX_FACE = 0.6  # tile boxes wider than this share of the tile: left to the whole frame


@dataclass
class FaceModels:
    """The three face models, loaded from a folder of exported manifests (``make models``).

    Attributes:
        detector: Face boxes.
        landmarks: 5 points per box (mapped from the detector's box convention).
        encoder: 128-d identity descriptor of the aligned chip.
        flip: Describe each chip as the mean of its descriptor and its mirror image's (a
            standard test-time augmentation; measured on the labelled set: clean recall 0.944
            -> 0.972 at the manifest threshold). The vectors differ from plain ones, so the
            encoder id gets a ``+flip`` suffix and they live in their own index.
    """

    detector: SsdFaceDetector
    landmarks: ShapePredictor
    encoder: Encoder
    flip: bool = True

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        encoder: str = EMBEDDER,
        provider: Provider | str = "auto",
        flip: bool = True,
    ) -> FaceModels:
        """Load ``res10_ssd.json``, ``dlib_shape_5.json`` and ``encoder`` from ``model_dir``.

        Args:
            model_dir: Folder of exported manifests (default store: ``<store>/onnx``).
            encoder: Manifest file name (or path) of the face embedder, e.g. the INT8
                ``dlib_resnet.int8-qdq.json``; its vectors get their own index.
            provider: Execution provider for the ONNX models.
            flip: Mirror-average the descriptors (see the class attributes).

        Raises:
            ModelStoreError: naming the file when a model is missing, damaged or mismatched.
        """
        from rap_edge.detect import ShapePredictor, SsdFaceDetector
        from rap_edge.models import Encoder

        folder = Path(model_dir).expanduser()
        if not folder.is_dir():
            msg = f"{folder}: model folder not found (run `make models`, or pass --models DIR)"
            raise ModelStoreError(msg)
        enc_path = Path(encoder) if Path(encoder).is_absolute() else folder / encoder
        models = cls(
            detector=SsdFaceDetector(folder / DETECTOR, provider=provider),
            landmarks=ShapePredictor(folder / LANDMARKS),
            encoder=Encoder(enc_path, provider=provider),
            flip=flip,
        )
        models.landmarks.box_map(models.detector.manifest.name)  # fail now if not fitted
        return models

    def detect(  # noqa: PLR0913
        self,
        image: npt.NDArray[np.uint8],
        *,
        max_side: int = 1280,
        min_inside: float = MIN_INSIDE,
        min_px: int = 8,
        tiles: int = 1,
        nms_iou: float = 0.4,
    ) -> list[Detection]:
        """Faces in a BGR frame, boxes clipped to it, in full-resolution pixels.

        A frame larger than ``max_side`` is detected on a downscaled copy. Boxes with less than
        ``min_inside`` of their area inside the frame are dropped: the SSD proposes such boxes
        on real photos (measured: 20 of 26 extra boxes on the labelled set's 173 clean photos
        lay largely outside), and a clipped remnant of one makes a bad face. Boxes narrower
        than ``min_px`` after clipping are dropped too.

        ``tiles`` > 1 also runs the detector on a ``tiles`` x ``tiles`` grid of overlapping
        tiles (one batched call), for small faces: the SSD sees its input at 300x300, so a
        20-40 px face in a 640x480 frame shrinks below its smallest prior. Tile boxes that touch
        an inner tile edge (cut faces) are dropped; the rest merge with the whole-frame boxes by
        NMS at ``nms_iou``.
        """
        import cv2

        from rap_edge.detect import Detection, nms

        h, w = image.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        small = (
            image
            if scale == 1.0
            else np.asarray(
                cv2.resize(
                    image,
                    (max(1, round(w * scale)), max(1, round(h * scale))),
                    interpolation=cv2.INTER_AREA,
                ),
                dtype=np.uint8,
            )
        )
        views: list[
            tuple[npt.NDArray[np.uint8], int, int, tuple[bool, bool, bool, bool] | None]
        ] = [(small, 0, 0, None)]
        if tiles > 1:
            sh, sw = small.shape[:2]
            tw, th = (
                int(sw / (tiles - (tiles - 1) * TILE_OVERLAP)),
                int(sh / (tiles - (tiles - 1) * TILE_OVERLAP)),
            )
            for r in range(tiles):
                for c in range(tiles):
                    x0 = round(c * (sw - tw) / (tiles - 1))
                    y0 = round(r * (sh - th) / (tiles - 1))
                    views.append(
                        (
                            np.ascontiguousarray(small[y0 : y0 + th, x0 : x0 + tw]),
                            x0,
                            y0,
                            (x0 > 0, y0 > 0, x0 + tw < sw, y0 + th < sh),
                        )
                    )
        found = self.detector.detect_batch([v[0] for v in views])
        boxes: list[list[float]] = []
        scores: list[float] = []
        whole = len(found[0])  # the whole-frame boxes come first
        for (view, x0, y0, inner), dets in zip(views, found, strict=True):
            vh, vw = view.shape[:2]
            for d in dets:
                if inner is not None and (
                    (inner[0] and d.x1 <= EDGE_PX)
                    or (inner[1] and d.y1 <= EDGE_PX)
                    or (inner[2] and d.x2 >= vw - 1 - EDGE_PX)
                    or (inner[3] and d.y2 >= vh - 1 - EDGE_PX)
                    or d.x2 - d.x1 > TILE_MAX_FACE * vw
                ):
                    continue
                box = np.array([d.x1 + x0, d.y1 + y0, d.x2 + x0, d.y2 + y0])
                if inner is not None and _covered(box, boxes[:whole], scale):
                    continue  # a part of a face the whole-frame pass found (eye, chin)
                boxes.append(
                    [
                        (d.x1 + x0) / scale,
                        (d.y1 + y0) / scale,
                        (d.x2 + x0) / scale,
                        (d.y2 + y0) / scale,
                    ]
                )
                scores.append(d.score)
        if not boxes:
            return []
        arr = np.asarray(boxes, dtype=np.float32)
        keep = (
            nms(arr, np.asarray(scores, dtype=np.float32), nms_iou)
            if tiles > 1
            else range(len(arr))
        )
        out = []
        for i in keep:
            x1, y1, x2, y2 = (float(v) for v in arr[i])
            area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
            cx1, cy1 = min(max(x1, 0.0), w - 1.0), min(max(y1, 0.0), h - 1.0)
            cx2, cy2 = min(max(x2, 0.0), w - 1.0), min(max(y2, 0.0), h - 1.0)
            inside = max(cx2 - cx1, 0.0) * max(cy2 - cy1, 0.0)
            if area <= 0 or inside / area < min_inside or cx2 - cx1 < max(1, min_px):
                continue
            out.append(Detection(cx1, cy1, cx2, cy2, float(scores[i]), "face"))
        return out

    @property
    def encoder_id(self) -> str:
        """Id of the face vectors (``+flip`` when mirror-averaged)."""
        return self.encoder.encoder_id + ("+flip" if self.flip else "")

    def embed_chips(self, chips: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Descriptors of aligned chips (mirror-averaged when :attr:`flip`), one batch."""
        if not self.flip or not chips:
            return self.encoder.embed(chips)
        both = self.encoder.embed([*chips, *(np.ascontiguousarray(c[:, ::-1]) for c in chips)])
        n = len(chips)
        out: npt.NDArray[np.float32] = ((both[:n] + both[n:]) / 2).astype(np.float32)
        return out

    def landmarks_for(
        self, image: npt.NDArray[np.uint8], boxes: Sequence[npt.ArrayLike]
    ) -> npt.NDArray[np.float32]:
        """5 landmarks per detector box, [len(boxes), 5, 2]."""
        return self.landmarks.predict_many(image, boxes, detector=self.detector.manifest.name)

    @staticmethod
    def chip(image: npt.NDArray[np.uint8], landmarks: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """The aligned 150x150 chip the embedder expects."""
        from rap_edge.detect import align_face

        return align_face(image, landmarks, size=CHIP_SIZE, padding=CHIP_PADDING)


def _covered(
    box: npt.NDArray[np.float64], others: Sequence[Sequence[float]], scale: float
) -> bool:
    """Whether half of ``box`` (detector pixels) lies inside one of ``others`` (frame pixels)."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    for o in others:
        ox1, oy1, ox2, oy2 = (v * scale for v in o)
        iw = min(box[2], ox2) - max(box[0], ox1)
        ih = min(box[3], oy2) - max(box[1], oy1)
        if iw > 0 and ih > 0 and iw * ih >= 0.5 * area:
            return True
    return False


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
        fallbacks = 0
        for img in images:
            face = largest(self.models.detect(img))
            box = np.array([0, 0, img.shape[1] - 1, img.shape[0] - 1], dtype=np.float64)
            if face is None:
                fallbacks += 1
            else:
                box = face.box.astype(np.float64)
            out.append(self.models.chip(img, self.models.landmarks_for(img, [box])[0]))
        # Counted once the batch succeeds: a failed batch is retried image by image.
        self.fallbacks += fallbacks
        return out

    def embed(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        return self.models.embed_chips(self.chips(images))
