"""Object and face detectors run through ONNX Runtime, configured by their manifests."""

from __future__ import annotations

from rap_edge.detect._ssd import Detection, SsdFaceDetector, decode_boxes, nms, prior_boxes

__all__ = ["Detection", "SsdFaceDetector", "decode_boxes", "nms", "prior_boxes"]
