"""Object and face detectors run through ONNX Runtime, configured by their manifests."""

from __future__ import annotations

from rap_edge.detect._align import TEMPLATE_5, align_face, chip_transform
from rap_edge.detect._landmarks import BoxMap, ShapePredictor
from rap_edge.detect._ssd import Detection, SsdFaceDetector, decode_boxes, nms, prior_boxes

__all__ = [
    "TEMPLATE_5",
    "BoxMap",
    "Detection",
    "ShapePredictor",
    "SsdFaceDetector",
    "align_face",
    "chip_transform",
    "decode_boxes",
    "nms",
    "prior_boxes",
]
