"""The object and pet path: where to look (detector boxes or proposal windows), crops, vectors.

Every concept whose category is not a face category (:data:`FACE_CATEGORIES`) — a dog, a mug,
a backpack — is recognised by its appearance with an instance embedder (MobileNetV2, 1280-d,
cosine; manifest ``mobilenetv2.json``). Its reference images are photos of the object and are
embedded whole (:func:`rap_edge.embed.embed_objects_in_memory`). In a frame, candidates come
from:

* an ONNX object detector supplied by a manifest: NanoDet (COCO's 80 classes,
  :class:`~rap_edge.detect._nanodet.NanoDetDetector`, ``nanodet.json``, picked by default
  when ``make models`` built it) or a YOLO export (:class:`~rap_edge.detect.YoloDetector`).
  Its boxes are kept only when their class is compatible with one of the memory's object
  categories (:data:`CATEGORY_CLASSES`: a ``dog`` concept is searched with ``dog`` boxes, a
  ``mug`` with ``cup`` boxes; RAP prompts an open-vocabulary detector with the categories, a
  closed-set detector is filtered by them instead). Each box is cropped at full resolution,
  widened to a square with the image around it (padded where the image ends) so the
  embedder's square input keeps the object's aspect, and embedded; or
* without a detector: the whole frame plus multi-scale sliding windows
  (:func:`proposal_windows`), each embedded and matched. This is **coarser and slower**: a
  window seldom fits the object, so the object shares its crop with background and scores
  lower than a detector's tight crop would; and every window is an embedder call (21 per
  640x480 frame with the defaults, against one per detected object).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

# embed_objects_in_memory moved to rap_edge.embed; still importable from here.
import numpy as np

from rap_edge.embed import embed_objects_in_memory
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.pipeline._faces import FACE_CATEGORIES
from rap_edge.sources._normalize import check_bgr_image

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    import numpy.typing as npt

    from rap_edge.detect import Detection
    from rap_edge.detect._centernet import CenterNetDetector
    from rap_edge.detect._nanodet import NanoDetDetector
    from rap_edge.detect._yolo import YoloDetector
    from rap_edge.memory import Memory
    from rap_edge.models import Encoder
    from rap_edge.runtime import Provider

__all__ = [
    "ANIMAL_CLASSES",
    "CATEGORY_CLASSES",
    "DEFAULT_DETECTOR",
    "OBJECT_EMBEDDER",
    "PROPOSAL_LABEL",
    "WINDOWS",
    "ObjectEmbedder",
    "ObjectModels",
    "detector_classes",
    "embed_objects_in_memory",
    "is_animal_category",
    "is_object_category",
    "load_detector",
    "object_categories",
    "proposal_windows",
]

OBJECT_EMBEDDER = "mobilenetv2.json"
DEFAULT_DETECTOR = "nanodet.json"
WINDOWS = "windows"  # detector setting that forces the window search
CONTEXT = 0.1  # share of a detector box added on each side before squaring

#: Memory categories that are not themselves detector class names, and the COCO classes their
#: concepts are searched with. A category that is a class name (``dog``, ``cat``, ``cup``,
#: ``bottle``, ``backpack``, ``teddy bear``...) maps to itself. Anything else has no detector
#: class: its concepts fall back to the window search (with a warning).
CATEGORY_CLASSES: dict[str, tuple[str, ...]] = {
    "pet": ("dog", "cat"),
    "puppy": ("dog",),
    "kitten": ("cat",),
    "mug": ("cup",),
    "coffee cup": ("cup",),
    "glass": ("wine glass", "cup"),
    "bag": ("handbag", "backpack", "suitcase"),
    "purse": ("handbag",),
    "luggage": ("suitcase",),
    "toy": ("teddy bear",),
    "plush": ("teddy bear",),
    "plush toy": ("teddy bear",),
    "teddy": ("teddy bear",),
    "phone": ("cell phone",),
    "smartphone": ("cell phone",),
    "mobile phone": ("cell phone",),
    "bike": ("bicycle",),
    "motorbike": ("motorcycle",),
    "ball": ("sports ball",),
    "football": ("sports ball",),
    "plant": ("potted plant",),
    "houseplant": ("potted plant",),
    "sofa": ("couch",),
    "television": ("tv",),
    "tv monitor": ("tv",),
    "computer": ("laptop",),
    "notebook": ("laptop", "book"),
    "remote control": ("remote",),
    "water bottle": ("bottle",),
    "flask": ("bottle",),
}
_log = logging.getLogger(__name__)
PROPOSAL_LABEL = "proposal"
DEFAULT_SCALES = (1.0, 0.6, 0.35)
MAX_WINDOWS = 1000  # refuse settings that would make a frame cost thousands of embeddings

Box = tuple[float, float, float, float]


def is_object_category(category: str) -> bool:
    """Whether concepts of ``category`` go to the object path (it is not a face category)."""
    return category.strip().lower() not in FACE_CATEGORIES


def object_categories(memory: Memory) -> set[str]:
    """The lower-cased categories of the memory's object and pet concepts (to filter boxes)."""
    return {c.lower() for c in memory.categories() if is_object_category(c)}


#: COCO classes with a face a face detector may take for a person's.
ANIMAL_CLASSES = frozenset(
    {"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"}
    | {"teddy bear"}
)


def is_animal_category(category: str) -> bool:
    """Whether concepts of ``category`` are animals (or plush ones): ``cat``, ``pet``, ..."""
    cat = category.strip().lower()
    return cat in ANIMAL_CLASSES or any(c in ANIMAL_CLASSES for c in CATEGORY_CLASSES.get(cat, ()))


def detector_classes(category: str, labels: Iterable[str]) -> set[str]:
    """The detector classes (lower-cased) whose boxes may hold a concept of ``category``.

    A category that is one of ``labels`` maps to itself, else :data:`CATEGORY_CLASSES` is
    looked up (only classes the detector has are returned); empty: no detector class.
    """
    known = {label.lower() for label in labels}
    cat = category.strip().lower()
    if cat in known:
        return {cat}
    return {c for c in CATEGORY_CLASSES.get(cat, ()) if c in known}


def _positions(length: int, side: int, overlap: float) -> list[int]:
    """Window starts along one axis: evenly spread from 0 to ``length - side``.

    As few windows as keep neighbours overlapping by at least ``overlap`` of ``side``.
    """
    if side >= length:
        return [0]
    stride = side * (1.0 - overlap)
    n = math.ceil((length - side) / stride - 1e-9) + 1
    return [round(i * (length - side) / (n - 1)) for i in range(n)]


def proposal_windows(
    width: int, height: int, *, scales: Sequence[float] = DEFAULT_SCALES, overlap: float = 0.0
) -> list[Box]:
    """The whole frame, then square sliding windows at each scale; (x1, y1, x2, y2) in pixels.

    A window's side is ``round(scale * min(width, height))``. Along each axis the windows are
    spread evenly from edge to edge, as few as keep neighbours overlapping by at least
    ``overlap`` of a side (stride at most ``side * (1 - overlap)``), so the frame is always
    covered and the real overlap is usually larger than asked. Order: whole frame, then scale
    by scale as given, rows top to bottom, columns left to right; exact duplicates (a square
    frame's scale-1 window) are dropped. Coordinates are integers (as floats), ``x2``/``y2``
    exclusive.

    With the defaults a 640x480 frame gets 21 boxes: the frame, 2 windows of 480 px, 6 of
    288 px (3 x 2) and 12 of 168 px (4 x 3), with real neighbour overlaps of 7-67 %. With
    ``overlap=0.5`` it gets 50, with ``0.25`` 29.

    Args:
        width: Frame width in pixels.
        height: Frame height in pixels.
        scales: Window side as shares of the frame's shorter side, each in 0.05..1.
        overlap: Least overlap of neighbouring windows, 0..0.9.

    Raises:
        InvalidInputError: on a size, scale or overlap out of range, or more than 1000 windows.
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name} must be a positive integer, got {value!r}"
            raise InvalidInputError(msg)
    if (
        isinstance(overlap, bool)
        or not isinstance(overlap, (int, float))
        or not (0.0 <= overlap <= 0.9)  # noqa: PLR2004
    ):
        msg = f"overlap must be a number in 0..0.9, got {overlap!r}"
        raise InvalidInputError(msg)
    out: list[Box] = [(0.0, 0.0, float(width), float(height))]
    seen = set(out)
    for scale in scales:
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not (0.05 <= scale <= 1.0)  # noqa: PLR2004
        ):
            msg = f"scales must be numbers in 0.05..1, got {scale!r}"
            raise InvalidInputError(msg)
        side = max(1, round(scale * min(width, height)))
        for y in _positions(height, side, overlap):
            for x in _positions(width, side, overlap):
                box = (float(x), float(y), float(x + side), float(y + side))
                if box not in seen:
                    seen.add(box)
                    out.append(box)
                if len(out) > MAX_WINDOWS:
                    msg = (
                        f"{len(scales)} scales at overlap {overlap} make more than "
                        f"{MAX_WINDOWS} windows for {width}x{height}"
                    )
                    raise InvalidInputError(msg)
    return out


def _as_box(box: Detection | Sequence[float] | npt.NDArray[np.floating], i: int) -> Box:
    from rap_edge.detect import Detection

    values = (box.x1, box.y1, box.x2, box.y2) if isinstance(box, Detection) else box
    try:
        x1, y1, x2, y2 = (float(v) for v in values)
    except (TypeError, ValueError) as err:
        msg = f"box #{i + 1}: expected (x1, y1, x2, y2) or a Detection, got {box!r}"
        raise InvalidInputError(msg) from err
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        msg = f"box #{i + 1}: coordinates must be finite, got {(x1, y1, x2, y2)}"
        raise InvalidInputError(msg)
    return x1, y1, x2, y2


def load_detector(
    manifest: str | Path, *, provider: Provider | str = "auto"
) -> YoloDetector | NanoDetDetector | CenterNetDetector:
    """The object detector a manifest describes.

    Chosen by its ``extra["decoder"]``: ``nanodet``, ``centernet``, else a YOLO export.

    Raises:
        ModelStoreError: naming the file when the model is missing, damaged or mismatched.
    """
    from rap_edge.detect._centernet import CenterNetDetector
    from rap_edge.detect._nanodet import NanoDetDetector
    from rap_edge.detect._yolo import YoloDetector
    from rap_edge.models import load_manifest

    m = load_manifest(manifest)
    decoder = m.extra.get("decoder")
    if decoder == "nanodet":
        return NanoDetDetector(m, provider=provider)
    if decoder == "centernet":
        return CenterNetDetector(m, provider=provider)
    return YoloDetector(m, provider=provider)


@dataclass
class ObjectModels:
    """The object path's models, loaded from a folder of exported manifests.

    Attributes:
        encoder: Instance embedder of crops and reference photos (MobileNetV2, 1280-d).
        detector: Object detector; None: proposal windows are searched instead (coarser and
            slower, see the module docstring).
        min_box_px: Detector boxes narrower or shorter than this (after clipping) are dropped.
        scales: Window sizes for :func:`proposal_windows` (no detector).
        overlap: Least window overlap for :func:`proposal_windows` (no detector).
    """

    encoder: Encoder
    detector: YoloDetector | NanoDetDetector | CenterNetDetector | None = None
    min_box_px: int = 16
    scales: tuple[float, ...] = DEFAULT_SCALES
    overlap: float = 0.0
    _warned: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        encoder: str = OBJECT_EMBEDDER,
        detector: str | None = None,
        provider: Provider | str = "auto",
    ) -> ObjectModels:
        """Load the embedder (and optionally a detector) from ``model_dir``.

        Args:
            model_dir: Folder of exported manifests (default store: ``<store>/onnx``).
            encoder: Manifest file name (or absolute path) of the instance embedder, e.g. an
                INT8 variant; its vectors get their own index.
            detector: Manifest file name (or absolute path) of a detector (task ``detect``,
                decoder ``nanodet``, ``centernet`` or ``yolo``); None: :data:`DEFAULT_DETECTOR`
                when the folder has it, else proposal windows; ``"windows"``: proposal windows.
            provider: Execution provider for the ONNX models.

        Raises:
            ModelStoreError: naming the file when a model is missing, damaged or mismatched.
        """
        from rap_edge.models import Encoder

        folder = Path(model_dir).expanduser()
        if not folder.is_dir():
            msg = f"{folder}: model folder not found (run `make models`, or pass --models DIR)"
            raise ModelStoreError(msg)

        def where(name: str) -> Path:
            return Path(name) if Path(name).is_absolute() else folder / name

        enc = Encoder(where(encoder), provider=provider)
        if enc.manifest.metric != "cosine":
            msg = f"{enc.manifest.path}: metric {enc.manifest.metric!r}; the memory uses cosine"
            raise ModelStoreError(msg)
        if detector is None and (folder / DEFAULT_DETECTOR).is_file():
            detector = DEFAULT_DETECTOR
        det = None
        if detector is not None and detector != WINDOWS:
            det = load_detector(where(detector), provider=provider)
        return cls(encoder=enc, detector=det)

    @property
    def encoder_id(self) -> str:
        """Id of the object vectors (the embedder manifest's)."""
        return self.encoder.encoder_id

    @property
    def labels(self) -> list[str] | None:
        """The detector's class names (None without a detector)."""
        return None if self.detector is None else list(self.detector.labels)

    def undetectable(self, categories: Iterable[str]) -> set[str]:
        """The categories with no compatible detector class (see :func:`detector_classes`).

        Empty without a detector: proposal windows do not depend on the category.
        """
        if self.detector is None:
            return set()
        return {c for c in categories if not detector_classes(c, self.detector.labels)}

    def propose(
        self, image: npt.NDArray[np.uint8], categories: Collection[str] | None = None
    ) -> list[Detection]:
        """Where to look for objects in a BGR frame, in its pixels.

        Args:
            image: BGR uint8 [H, W, 3].
            categories: The memory's object categories (:func:`object_categories`);
                detections whose class name is not one of them (case-insensitive) are
                dropped. None: every class. An empty collection: nothing to look for, so
                nothing is proposed (with or without a detector).

        Returns:
            With a detector: its boxes (clipped, at least :attr:`min_box_px` on each side),
            best first, labelled with their class names; then, if a category has no detector
            class, the proposal windows for its concepts. Without one: the proposal windows
            as ``Detection(label="proposal", score=1.0)``, whole frame first.

        Raises:
            InvalidInputError: if ``image`` is not a BGR uint8 array.
        """
        from rap_edge.detect import Detection

        check_bgr_image(image, "image")
        wanted = None if categories is None else {c.strip().lower() for c in categories}
        if wanted is not None and not wanted:
            return []
        h, w = image.shape[:2]
        windows = self.detector is None
        if self.detector is not None and wanted is not None:
            classes: set[str] = set()
            for cat in sorted(wanted):
                mapped = detector_classes(cat, self.detector.labels)
                if not mapped:
                    windows = True
                    if cat not in self._warned:
                        self._warned.add(cat)
                        _log.warning(
                            "objects: category %r has no detector class (see CATEGORY_CLASSES);"
                            " its concepts are searched with windows (slower, coarser)",
                            cat,
                        )
                classes |= mapped
            wanted = classes
        found: list[Detection] = []
        if self.detector is not None and (wanted is None or wanted):
            for d in self.detector.detect(image):
                if wanted is not None and d.label.lower() not in wanted:
                    continue
                x1, y1 = min(max(d.x1, 0.0), float(w)), min(max(d.y1, 0.0), float(h))
                x2, y2 = min(max(d.x2, 0.0), float(w)), min(max(d.y2, 0.0), float(h))
                if min(x2 - x1, y2 - y1) < max(1, self.min_box_px):
                    continue
                found.append(Detection(x1, y1, x2, y2, d.score, d.label))
        if windows:
            found += [
                Detection(*box, 1.0, PROPOSAL_LABEL)
                for box in proposal_windows(w, h, scales=self.scales, overlap=self.overlap)
            ]
        return found

    @staticmethod
    def crops(
        image: npt.NDArray[np.uint8],
        boxes: Sequence[Detection | Sequence[float] | npt.NDArray[np.floating]],
        *,
        margin: float = 0.0,
    ) -> list[npt.NDArray[np.uint8]]:
        """Copies of the image under each box, at full resolution.

        Args:
            image: BGR uint8 [H, W, 3].
            boxes: Detections or (x1, y1, x2, y2) in the image's pixels.
            margin: Context added on every side, as a share of the box's width and height
                (0.1: 10 %); the result is clipped to the image.

        Raises:
            InvalidInputError: if the image is not a BGR uint8 array, the margin is not in
                0..2, or a box is malformed or lies entirely outside the image.
        """
        check_bgr_image(image, "image")
        if (
            isinstance(margin, bool)
            or not isinstance(margin, (int, float))
            or not (0.0 <= margin <= 2.0)  # noqa: PLR2004
        ):
            msg = f"margin must be a number in 0..2, got {margin!r}"
            raise InvalidInputError(msg)
        h, w = image.shape[:2]
        out = []
        for i, box in enumerate(boxes):
            x1, y1, x2, y2 = _as_box(box, i)
            mx, my = margin * max(x2 - x1, 0.0), margin * max(y2 - y1, 0.0)
            left, top = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
            right, bottom = min(w, math.ceil(x2 + mx)), min(h, math.ceil(y2 + my))
            if right <= left or bottom <= top:
                msg = f"box #{i + 1} {(x1, y1, x2, y2)} has no pixels inside the {w}x{h} image"
                raise InvalidInputError(msg)
            out.append(image[top:bottom, left:right].copy())
        return out

    def compatible(self, category: str, label: str) -> bool:
        """Whether a concept of ``category`` may be in a box labelled ``label``.

        A detector box fits the categories that map to its class (:func:`detector_classes`).
        Windows (``proposal``) fit any object category without a detector, and with one only
        the categories it has no class for (the rest are searched in its boxes).
        """
        if not is_object_category(category):
            return False
        if self.detector is None:
            return True
        mapped = detector_classes(category, self.detector.labels)
        if label.lower() == PROPOSAL_LABEL:
            return not mapped
        return label.lower() in mapped

    @staticmethod
    def square_crops(
        image: npt.NDArray[np.uint8],
        boxes: Sequence[Detection | Sequence[float] | npt.NDArray[np.floating]],
        *,
        context: float = CONTEXT,
    ) -> list[npt.NDArray[np.uint8]]:
        """Square crops around boxes: ``context`` added per side, the short side widened.

        The embedder stretches its input to a square; a square crop keeps the object's
        aspect. The square takes the image around the box; where it leaves the image it is
        padded by replicating the border.

        Raises:
            InvalidInputError: if the image is not a BGR uint8 array or a box is malformed
                or entirely outside the image.
        """
        import cv2

        check_bgr_image(image, "image")
        h, w = image.shape[:2]
        out = []
        for i, box in enumerate(boxes):
            x1, y1, x2, y2 = _as_box(box, i)
            if min(x2, float(w)) <= max(x1, 0.0) or min(y2, float(h)) <= max(y1, 0.0):
                msg = f"box #{i + 1} {(x1, y1, x2, y2)} has no pixels inside the {w}x{h} image"
                raise InvalidInputError(msg)
            side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * context)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            left, top = math.floor(cx - side / 2), math.floor(cy - side / 2)
            n = max(1, math.ceil(side))
            crop = image[max(0, top) : max(0, top + n), max(0, left) : max(0, left + n)]
            pads = (
                max(0, -top),
                max(0, top + n - h),
                max(0, -left),
                max(0, left + n - w),
            )
            if any(pads):
                crop = np.asarray(cv2.copyMakeBorder(crop, *pads, cv2.BORDER_REPLICATE), np.uint8)
            out.append(np.ascontiguousarray(crop))
        return out

    def detection_crops(
        self, image: npt.NDArray[np.uint8], dets: Sequence[Detection]
    ) -> list[npt.NDArray[np.uint8]]:
        """What the embedder sees for each proposal: windows as they are, boxes squared."""
        if dets and dets[0].label == PROPOSAL_LABEL:
            return self.crops(image, dets)
        return self.square_crops(image, dets)

    def enrollment_crop(
        self,
        image: npt.NDArray[np.uint8],
        category: str,
        *,
        whole_image: bool = False,
        photo: str = "the photo",
    ) -> npt.NDArray[np.uint8]:
        """The part of a reference photo to embed for a concept of ``category``.

        With a detector: the square crop of the largest box of a class compatible with the
        category (a photo with twenty objects: the largest matching one). Without a detector,
        for a category with no detector class, or with ``whole_image``: the whole photo.

        Args:
            image: The photo, BGR uint8.
            category: The concept's category (``dog``, ``mug``, ...).
            whole_image: Keep the whole photo.
            photo: How the refusal names the photo (``image #2 (rex.jpg)``).

        Raises:
            InvalidInputError: if the photo has no box of a compatible class, naming the
                photo, the classes looked for and ``--whole-image``.
        """
        check_bgr_image(image, "image")
        if whole_image or self.detector is None:
            return image
        classes = detector_classes(category, self.detector.labels)
        if not classes:
            _log.warning(
                "objects: category %r has no detector class; its photo is embedded whole",
                category,
            )
            return image
        boxes = [d for d in self.propose(image, None) if d.label.lower() in classes]
        if not boxes:
            msg = (
                f"no {' or '.join(sorted(classes))} found in {photo} for category "
                f"{category!r}; use a photo where it is visible, or --whole-image to enrol "
                "the whole photo"
            )
            raise InvalidInputError(msg)
        big = max(boxes, key=lambda d: (d.x2 - d.x1) * (d.y2 - d.y1))
        return self.square_crops(image, [big])[0]

    def embed(self, crops: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Vectors of crops, float32 [len(crops), dim] (batched by the encoder)."""
        return self.encoder.embed(crops)


class ObjectEmbedder:
    """Implements the memory's ``Embedder`` for object concepts: the whole reference photo.

    A reference image of an object is a photo of it, so it is embedded whole, as
    :func:`rap_edge.embed.embed_objects_in_memory` does.
    """

    def __init__(self, models: ObjectModels | Encoder) -> None:
        self.encoder = models.encoder if isinstance(models, ObjectModels) else models

    @property
    def encoder_id(self) -> str:
        return self.encoder.encoder_id

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        return self.encoder.embed(images)
