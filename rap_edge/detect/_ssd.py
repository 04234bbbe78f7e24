"""SSD face detection run through ONNX Runtime, configured entirely by its manifest.

The ONNX model outputs the raw box regressions ``loc`` [N, P*4] and the softmaxed class scores
``conf`` [N, P*num_classes]; prior boxes, decoding and NMS follow Caffe SSD's ``PriorBox`` and
``DetectionOutput`` layers (CENTER_SIZE code, variances not encoded in the target, greedy NMS
per class on normalized boxes) with the parameters from the manifest's ``extra``. Prior boxes
are not clipped where the model was trained without clipping, so centres and extents of the
coarse heads reach outside the image, as in the original network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models import ModelManifest, load_manifest, open_session, preprocess

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import numpy.typing as npt

    from rap_edge.runtime import Provider

__all__ = ["Detection", "SsdFaceDetector", "decode_boxes", "nms", "prior_boxes"]


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object, in the pixels of the image given to ``detect``.

    Attributes:
        x1: Left edge (float32 value; may lie outside the image).
        y1: Top edge.
        x2: Right edge.
        y2: Bottom edge.
        score: Class confidence in 0..1.
        label: Class name, e.g. ``face``.
        angle: In-plane rotation (degrees, counter-clockwise) that makes the object upright,
            for faces found on a rotated copy of the frame: the box is then the upright box
            about the same centre (rotate the image by ``angle`` about the box centre, as
            ``cv2.getRotationMatrix2D`` does, to see it upright). 0 for upright detections.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    label: str = "face"
    angle: float = 0.0

    @property
    def box(self) -> npt.NDArray[np.float32]:
        """The box as float32 [x1, y1, x2, y2]."""
        return np.array([self.x1, self.y1, self.x2, self.y2], dtype=np.float32)


def _head_boxes(head: Mapping[str, Any]) -> list[tuple[float, float]]:
    """Prior (width, height) in pixels for one location, in Caffe's order."""
    ratios: list[float] = []
    for ar in head.get("aspect_ratios", []):
        for r in (float(ar), 1.0 / float(ar)) if head.get("flip", True) else (float(ar),):
            if abs(r - 1.0) > 1e-6 and all(abs(r - q) > 1e-6 for q in ratios):  # noqa: PLR2004
                ratios.append(r)
    max_sizes = [float(v) for v in head.get("max_sizes", [])]
    sizes: list[tuple[float, float]] = []
    for k, min_size in enumerate(float(v) for v in head["min_sizes"]):
        sizes.append((min_size, min_size))
        if max_sizes:
            side = math.sqrt(min_size * max_sizes[k])
            sizes.append((side, side))
        sizes += [(min_size * math.sqrt(r), min_size / math.sqrt(r)) for r in ratios]
    return sizes


def prior_boxes(extra: Mapping[str, Any]) -> npt.NDArray[np.float32]:
    """Prior boxes [P, 4] (xmin, ymin, xmax, ymax, normalized to the input size).

    Order: heads as listed, then rows, columns, and the boxes of one location (minimum size,
    the geometric mean of minimum and maximum size, then the aspect ratios), which is the
    order of the network's permuted and flattened head outputs.

    Raises:
        ModelStoreError: if the prior settings are missing or malformed.
    """
    try:
        image_h, image_w = (int(v) for v in extra["image_size"])
        out = []
        for head in extra["priors"]:
            fh, fw = (int(v) for v in head["feature_map"])
            step = head.get("step")
            step_h = float(step) if step else image_h / fh
            step_w = float(step) if step else image_w / fw
            offset = float(head.get("offset", 0.5))
            sizes = np.array(_head_boxes(head), dtype=np.float64)
            cy, cx = np.meshgrid(
                (np.arange(fh) + offset) * step_h, (np.arange(fw) + offset) * step_w, indexing="ij"
            )
            centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
            half = sizes.reshape(1, -1, 2) / 2
            scale = np.array([image_w, image_h], dtype=np.float64)
            boxes = np.concatenate([(centres - half) / scale, (centres + half) / scale], axis=-1)
            boxes = boxes.reshape(-1, 4)
            if head.get("clip", False):
                boxes = np.clip(boxes, 0.0, 1.0)
            out.append(boxes)
    except (KeyError, TypeError, ValueError) as err:
        msg = f"manifest extra: prior box settings are incomplete ({err!r})"
        raise ModelStoreError(msg) from err
    return np.concatenate(out).astype(np.float32)


def decode_boxes(
    loc: npt.NDArray[np.float32], priors: npt.NDArray[np.float32], variances: Sequence[float]
) -> npt.NDArray[np.float32]:
    """Apply CENTER_SIZE regressions [P, 4] to priors [P, 4]; normalized xmin, ymin, xmax, ymax."""
    v = np.asarray(variances, dtype=np.float32)
    pw = priors[:, 2] - priors[:, 0]
    ph = priors[:, 3] - priors[:, 1]
    pcx = (priors[:, 0] + priors[:, 2]) / 2
    pcy = (priors[:, 1] + priors[:, 3]) / 2
    cx = v[0] * loc[:, 0] * pw + pcx
    cy = v[1] * loc[:, 1] * ph + pcy
    w = np.exp(v[2] * loc[:, 2]) * pw
    h = np.exp(v[3] * loc[:, 3]) * ph
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


def _area(boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return np.where((w < 0) | (h < 0), np.float32(0), w * h).astype(np.float32)


def nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float, top_k: int = 0
) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression; indices kept, best score first.

    Candidates are taken by descending score (at most ``top_k`` of them when it is positive);
    each is kept unless its IoU with a box already kept exceeds ``iou``.
    """
    order = np.argsort(-scores, kind="stable")
    if top_k > 0:
        order = order[:top_k]
    areas = _area(boxes)
    keep: list[int] = []
    for i in order:
        if keep:
            k = np.asarray(keep)
            iw = np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0])
            ih = np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1])
            inter = np.where((iw > 0) & (ih > 0), iw * ih, 0)
            overlap = inter / np.maximum(areas[k] + areas[i] - inter, np.finfo(np.float32).tiny)
            if (overlap > iou).any():
                continue
        keep.append(int(i))
    return np.asarray(keep, dtype=np.intp)


class SsdFaceDetector:
    """A face detector from an exported SSD model (task ``detect``, decoder ``ssd``)."""

    def __init__(
        self,
        manifest: ModelManifest | str | Path,
        *,
        provider: Provider | str = "auto",
        score_threshold: float | None = None,
        check_hash: bool = True,
    ) -> None:
        """Load the model a manifest describes.

        Args:
            manifest: A manifest or the path of its JSON file.
            provider: Execution provider (``auto``, ``tensorrt``, ``cuda``, ``cpu``).
            score_threshold: Minimum face score (default: the manifest's ``score_threshold``).
            check_hash: Verify the ONNX file against the manifest's SHA-256 first.

        Raises:
            ModelStoreError: if the model file is missing, damaged or does not match.
            InvalidInputError: if ``score_threshold`` is outside 0..1.
        """
        self.manifest = (
            manifest if isinstance(manifest, ModelManifest) else load_manifest(manifest)
        )
        m = self.manifest
        extra = m.extra
        if m.task != "detect" or extra.get("decoder") != "ssd":
            msg = f"{m.path}: task {m.task!r} is not an SSD detector"
            raise ModelStoreError(msg)
        threshold = (
            extra.get("score_threshold", m.threshold)
            if score_threshold is None
            else (score_threshold)
        )
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            msg = f"score_threshold must be in 0..1, got {threshold!r}"
            raise InvalidInputError(msg)
        self.score_threshold = float(threshold)
        try:
            self._priors = prior_boxes(extra)
            self._variances = [float(v) for v in extra["variances"]]
            self._nms_iou = float(extra["nms_iou"])
            self._top_k = int(extra.get("top_k", 0))
            self._keep_top_k = int(extra.get("keep_top_k", 0))
            self._classes = int(extra.get("num_classes", 2))
            self._background = int(extra.get("background_label", 0))
            self._labels = [str(v) for v in extra.get("labels", [])]
            self._loc_name = str(extra.get("loc_output", "loc"))
            self._conf_name = str(extra.get("conf_output", m.output_name))
        except (KeyError, TypeError, ValueError) as err:
            msg = f"{m.path}: manifest extra is incomplete for the SSD decoder ({err!r})"
            raise ModelStoreError(msg) from err
        if len(self._variances) != 4 or self._code_type(extra) != "CENTER_SIZE":  # noqa: PLR2004
            msg = f"{m.path}: SSD decoder needs 4 variances and code_type CENTER_SIZE"
            raise ModelStoreError(msg)
        self._session, self.provider, outputs = open_session(
            m,
            provider=provider,
            check_hash=check_hash,
            outputs=[self._loc_name, self._conf_name],
        )
        last = outputs[self._loc_name][-1]
        if isinstance(last, int) and last != 4 * len(self._priors):
            msg = f"manifest {m.path} gives {len(self._priors)} priors, the model has {last // 4}"
            raise ModelStoreError(msg)

    @staticmethod
    def _code_type(extra: Mapping[str, Any]) -> str:
        return str(extra.get("code_type", "CENTER_SIZE")).upper()

    @property
    def num_priors(self) -> int:
        """Number of prior boxes."""
        return len(self._priors)

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        """Faces in one BGR uint8 image [H, W, 3], best score first.

        Raises:
            InvalidInputError: if the image is not a BGR uint8 array.
        """
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[list[Detection]]:
        """Faces in each of several BGR uint8 images (one inference call).

        Raises:
            InvalidInputError: if an image is not a BGR uint8 array.
        """
        if not len(images):
            return []
        batch = preprocess(images, self.manifest)
        loc, conf = self._session.run(
            [self._loc_name, self._conf_name], {self.manifest.input_name: batch}
        )
        loc = np.asarray(loc, dtype=np.float32).reshape(len(images), -1, 4)
        conf = np.asarray(conf, dtype=np.float32).reshape(len(images), -1, self._classes)
        return [
            self._decode(loc[i], conf[i], img.shape[1], img.shape[0])
            for i, img in enumerate(images)
        ]

    def _decode(
        self, loc: npt.NDArray[np.float32], conf: npt.NDArray[np.float32], width: int, height: int
    ) -> list[Detection]:
        boxes = decode_boxes(loc, self._priors, self._variances)
        found: list[tuple[float, int, int]] = []  # (score, class, prior index)
        for c in range(self._classes):
            if c == self._background:
                continue
            idx = np.flatnonzero(conf[:, c] > self.score_threshold)
            if not idx.size:
                continue
            kept = nms(boxes[idx], conf[idx, c], self._nms_iou, self._top_k)
            found += [(float(conf[idx[k], c]), c, int(idx[k])) for k in kept]
        found.sort(key=lambda f: -f[0])
        if self._keep_top_k > 0:
            found = found[: self._keep_top_k]
        scale = np.array([width, height, width, height], dtype=np.float32)
        out = []
        for score, c, i in found:
            x1, y1, x2, y2 = (float(v) for v in boxes[i] * scale)
            label = self._labels[c] if c < len(self._labels) else str(c)
            out.append(Detection(x1, y1, x2, y2, score, label))
        return out
