"""Object and face detectors run through ONNX Runtime, configured by their manifests."""

from __future__ import annotations

from rap_edge.detect._align import TEMPLATE_5, align_face, chip_transform
from rap_edge.detect._landmarks import BoxMap, ShapePredictor
from rap_edge.detect._ssd import Detection, SsdFaceDetector, decode_boxes, nms, prior_boxes
from rap_edge.detect._yolo import YOLO_FORMATS, YoloDetector, letterbox

__all__ = [
    "TEMPLATE_5",
    "YOLO_FORMATS",
    "BoxMap",
    "Detection",
    "ShapePredictor",
    "SsdFaceDetector",
    "YoloDetector",
    "align_face",
    "chip_transform",
    "decode_boxes",
    "letterbox",
    "nms",
    "prior_boxes",
]
