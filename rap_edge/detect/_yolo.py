"""YOLO-style object detection run through ONNX Runtime, configured entirely by its manifest.

A manifest with task ``detect`` and ``extra["decoder"] == "yolo"`` describes an exported
single-output YOLO head (Ultralytics-style export, no NMS inside the graph). ``extra`` keys:

* ``format``: ``yolov8`` — output [N, 4 + C, A]: per anchor ``cx, cy, w, h`` then C class
  scores (no objectness; YOLOv8, YOLO11, YOLO-World exported with fixed classes); or
  ``yolov5`` — output [N, A, 5 + C]: ``cx, cy, w, h, objectness`` then C class scores
  (YOLOv5, YOLOv7); a box's score is objectness times class score.
* ``labels``: the C class names, in output order (a list, or a mapping from ``"0"``.. as in
  Ultralytics' metadata); a count that differs from the model's output is refused.
* ``score_threshold``: least class score kept (default: the manifest's ``threshold``).
* ``nms_iou``: IoU above which a lower-scoring box of the *same class* is suppressed
  (default 0.45).
* ``letterbox``: keep the aspect ratio and pad with grey 114 to the input size, centred, as
  Ultralytics does (default true); false stretches the image to the input size.
* ``normalized``: boxes are in 0..1 of the input size instead of input pixels (default false).
* ``max_detections``: at most this many boxes per image, best first (default 300).

Colour order, scaling (1/255 for Ultralytics), mean/std and layout come from the manifest's
``preprocess`` as for every model. Boxes are mapped back to the original image's pixels and
clipped to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.detect._nanodet import manifest_labels, number, score_threshold_of
from rap_edge.detect._ssd import Detection, nms
from rap_edge.errors import ModelStoreError
from rap_edge.models import ModelManifest, load_manifest, open_session, preprocess
from rap_edge.sources._normalize import check_bgr_image

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import numpy.typing as npt

    from rap_edge.runtime import Provider

__all__ = ["YOLO_FORMATS", "YoloDetector", "letterbox"]

YOLO_FORMATS = ("yolov8", "yolov5")
PAD_VALUE = 114  # Ultralytics' letterbox grey
DEFAULT_NMS_IOU = 0.45
DEFAULT_MAX_DETECTIONS = 300


def letterbox(
    image: npt.NDArray[np.uint8], width: int, height: int
) -> tuple[npt.NDArray[np.uint8], float, int, int]:
    """Resize keeping the aspect ratio, pad with grey 114 to ``width`` x ``height``, centred.

    Same arithmetic as Ultralytics' ``LetterBox`` (scale-up allowed, padding split around the
    centre). Returns the padded image, the scale and the left and top padding: an input pixel
    ``x`` is original pixel ``(x - left) / scale``.
    """
    import cv2

    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    dw, dh = (width - new_w) / 2, (height - new_h) / 2
    left, right = round(dw - 0.1), round(dw + 0.1)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    resized = (
        image
        if (new_w, new_h) == (w, h)
        else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    padded = cv2.copyMakeBorder(
        resized,
        top,
        bottom,
        left,
        right,
        cv2.BORDER_CONSTANT,
        value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )
    return np.asarray(padded, dtype=np.uint8), scale, left, top


def _labels(value: object, where: object) -> list[str]:
    """Class names from a list or an index-keyed mapping."""
    if isinstance(value, dict):
        try:
            pairs = sorted((int(k), str(v)) for k, v in value.items())
        except (TypeError, ValueError) as err:
            msg = f"{where}: manifest extra 'labels' keys must be class indices ({err})"
            raise ModelStoreError(msg) from err
        if [k for k, _ in pairs] != list(range(len(pairs))):
            msg = f"{where}: manifest extra 'labels' must number the classes 0..C-1"
            raise ModelStoreError(msg)
        value = [v for _, v in pairs]
    return manifest_labels({"labels": value}, where)


def _flag(extra: Mapping[str, Any], key: str, default: bool, where: object) -> bool:
    value = extra.get(key, default)
    if not isinstance(value, bool):
        msg = f"{where}: manifest extra {key!r} must be true or false, got {value!r}"
        raise ModelStoreError(msg)
    return value


class YoloDetector:
    """An object detector from an exported YOLO model (task ``detect``, decoder ``yolo``)."""

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
            score_threshold: Least class score kept (default: the manifest's
                ``extra.score_threshold``, else its ``threshold``).
            check_hash: Verify the ONNX file against the manifest's SHA-256 first.

        Raises:
            ModelStoreError: naming the manifest, if it is not a YOLO detector's, its ``extra``
                is malformed, its class names do not match the model's output, or the model
                file is missing, damaged or does not match.
            InvalidInputError: if ``score_threshold`` is outside 0..1.
        """
        self.manifest = (
            manifest if isinstance(manifest, ModelManifest) else load_manifest(manifest)
        )
        m = self.manifest
        where = m.path or m.onnx
        extra = m.extra
        if m.task != "detect" or extra.get("decoder") != "yolo":
            msg = (
                f"{where}: task {m.task!r} with decoder {extra.get('decoder')!r} is not a "
                "YOLO detector (task 'detect', decoder 'yolo')"
            )
            raise ModelStoreError(msg)
        fmt = extra.get("format")
        if fmt not in YOLO_FORMATS:
            msg = f"{where}: manifest extra 'format' must be one of {YOLO_FORMATS}, got {fmt!r}"
            raise ModelStoreError(msg)
        self.format: str = str(fmt)
        self.labels = _labels(extra.get("labels"), where)
        self.score_threshold = score_threshold_of(extra, m.threshold, score_threshold, where)
        self.nms_iou = number(extra, "nms_iou", DEFAULT_NMS_IOU, where, (0, 1))
        self.max_detections = int(
            number(extra, "max_detections", DEFAULT_MAX_DETECTIONS, where, (1, 100_000))
        )
        self.letterbox = _flag(extra, "letterbox", True, where)  # noqa: FBT003
        self.normalized = _flag(extra, "normalized", False, where)  # noqa: FBT003
        self._session, self.provider, outputs = open_session(
            m, provider=provider, check_hash=check_hash, outputs=[m.output_name]
        )
        self._check_output_shape(outputs[m.output_name])
        shape = next(i.shape for i in self._session.get_inputs() if i.name == m.input_name)
        self._batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else 0
        size = (m.preprocess.height, m.preprocess.width)
        dims = tuple(shape[2:4] if m.preprocess.layout == "NCHW" else shape[1:3])
        if len(shape) == 4 and all(isinstance(d, int) for d in dims) and dims != size:  # noqa: PLR2004
            msg = (
                f"{where}: manifest input size {size[0]}x{size[1]} (HxW) does not match the "
                f"model's {dims[0]}x{dims[1]}"
            )
            raise ModelStoreError(msg)

    @property
    def num_classes(self) -> int:
        """Number of classes (length of :attr:`labels`)."""
        return len(self.labels)

    def _check_output_shape(self, shape: Sequence[object]) -> None:
        """Refuse an output whose class axis disagrees with the labels (static or at run time).

        Raises:
            ModelStoreError: naming the manifest.
        """
        where = self.manifest.path or self.manifest.onnx
        if not len(shape):
            return  # rank unknown before running: checked on the real output
        if len(shape) != 3:  # noqa: PLR2004
            msg = f"{where}: a YOLO output must have 3 axes [N, ., .], the model has {shape}"
            raise ModelStoreError(msg)
        axis, extra = (1, 4) if self.format == "yolov8" else (2, 5)
        size = shape[axis]
        if isinstance(size, int) and size != extra + self.num_classes:
            msg = (
                f"{where}: manifest lists {self.num_classes} labels, but the model's "
                f"{self.format} output has {size - extra} classes (output shape {shape})"
            )
            raise ModelStoreError(msg)

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        """Objects in one BGR uint8 image [H, W, 3], best score first, in its pixels.

        Raises:
            InvalidInputError: if the image is not a BGR uint8 array.
        """
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[list[Detection]]:
        """Objects in each of several BGR uint8 images (batched as the model allows).

        Raises:
            InvalidInputError: if an image is not a BGR uint8 array.
            ModelStoreError: if the model's output does not match its manifest.
        """
        if not len(images):
            return []
        pre = self.manifest.preprocess
        inputs: list[npt.NDArray[np.uint8]] = []
        maps: list[tuple[float, float, float, float, int, int]] = []  # sx, sy, dx, dy, w, h
        for i, img in enumerate(images):
            check_bgr_image(img, f"image #{i + 1}")
            h, w = img.shape[:2]
            if self.letterbox:
                boxed, scale, left, top = letterbox(img, pre.width, pre.height)
                inputs.append(boxed)
                maps.append((scale, scale, left, top, w, h))
            else:
                inputs.append(img)
                maps.append((pre.width / w, pre.height / h, 0.0, 0.0, w, h))
        step = self._batch or len(inputs)
        out: list[list[Detection]] = []
        for start in range(0, len(inputs), step):
            chunk = inputs[start : start + step]
            (raw,) = self._session.run(
                [self.manifest.output_name],
                {self.manifest.input_name: preprocess(chunk, self.manifest)},
            )
            arr = np.asarray(raw, dtype=np.float32)
            self._check_output_shape(arr.shape)
            if arr.shape[0] != len(chunk):
                msg = (
                    f"{self.manifest.path}: the model returned {arr.shape[0]} results for "
                    f"{len(chunk)} images"
                )
                raise ModelStoreError(msg)
            out += [self._decode(arr[j], maps[start + j]) for j in range(len(chunk))]
        return out

    def _decode(
        self, raw: npt.NDArray[np.float32], mapping: tuple[float, float, float, float, int, int]
    ) -> list[Detection]:
        """Boxes of one image's raw output, NMS per class, mapped to the original pixels."""
        rows = raw.T if self.format == "yolov8" else raw  # [A, 4 + C] or [A, 5 + C]
        if self.format == "yolov8":
            cls = rows[:, 4:]
        else:
            objectness = rows[:, 4:5]
            cls = rows[:, 5:] * objectness
        best = np.argmax(cls, axis=1)
        scores = cls[np.arange(len(cls)), best]
        idx = np.flatnonzero(scores > self.score_threshold)
        if not idx.size:
            return []
        xywh = rows[idx, :4].astype(np.float64)
        if self.normalized:
            pre = self.manifest.preprocess
            xywh *= np.array([pre.width, pre.height, pre.width, pre.height], dtype=np.float64)
        boxes = np.stack(
            [
                xywh[:, 0] - xywh[:, 2] / 2,
                xywh[:, 1] - xywh[:, 3] / 2,
                xywh[:, 0] + xywh[:, 2] / 2,
                xywh[:, 1] + xywh[:, 3] / 2,
            ],
            axis=1,
        )
        scores, best = scores[idx], best[idx]
        found: list[int] = []
        for c in np.unique(best):
            members = np.flatnonzero(best == c)
            kept = nms(boxes[members].astype(np.float32), scores[members], self.nms_iou)
            found += [int(members[k]) for k in kept]
        found.sort(key=lambda k: (-float(scores[k]), k))
        sx, sy, dx, dy, w, h = mapping
        out: list[Detection] = []
        for k in found:
            if len(out) == self.max_detections:
                break
            x1, y1, x2, y2 = boxes[k]
            x1, x2 = (min(max((v - dx) / sx, 0.0), float(w)) for v in (x1, x2))
            y1, y2 = (min(max((v - dy) / sy, 0.0), float(h)) for v in (y1, y2))
            if x2 <= x1 or y2 <= y1:
                continue  # entirely in the padding
            out.append(
                Detection(
                    float(x1),
                    float(y1),
                    float(x2),
                    float(y2),
                    float(scores[k]),
                    self.labels[int(best[k])],
                )
            )
        return out
