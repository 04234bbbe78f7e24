"""CenterNet decoding: the graph's peak rows, threshold, class NMS, letterbox, manifest checks.

The model here is a tiny constant graph built in the test (plumbing, not detection quality);
the converted real model's parity with TF.js is checked by ``export/centernet.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.detect._centernet import CenterNetDetector, decode_centernet
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models import ModelManifest, Preprocess, sha256_file, write_manifest

if TYPE_CHECKING:
    from pathlib import Path

onnx = pytest.importorskip("onnx")

SIZE = 32
LABELS = ["cat", "dog"]
# Peak rows as the graph writes them: x1, y1, x2, y2 (input pixels), score, class index.
ROWS = np.array(
    [
        [4, 4, 20, 28, 0.9, 0],  # a cat
        [5, 4, 21, 27, 0.6, 0],  # the same cat from a neighbouring peak: suppressed
        [4, 4, 20, 28, 0.7, 1],  # a dog on top of it: another class, kept
        [0, 0, 8, 8, 0.2, 1],  # below the threshold
    ],
    np.float32,
)


def _model(path: Path, rows: np.ndarray, classes: int) -> None:
    from onnx import TensorProto, helper, numpy_helper

    heat = np.zeros((1, SIZE // 4, SIZE // 4, classes), np.float32)
    outputs = {"dets": rows[None], "heat": heat}
    nodes = [
        helper.make_node("Constant", [], [n], value=numpy_helper.from_array(a, n + "_v"))
        for n, a in outputs.items()
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-centernet",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, SIZE, SIZE, 3])],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape))
            for n, a in outputs.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _manifest(
    tmp_path: Path, *, labels: list[str] = LABELS, classes: int = 2, **extra: object
) -> ModelManifest:
    path = tmp_path / f"tiny{classes}.onnx"
    if not path.exists():
        _model(path, ROWS, classes)
    m = ModelManifest(
        name="tiny-centernet",
        task="detect",
        encoder_id="tiny",
        onnx=path,
        onnx_sha256=sha256_file(path),
        input_name="images",
        output_name="dets",
        dim=len(labels),
        metric="none",
        threshold=0.5,
        preprocess=Preprocess(
            SIZE, SIZE, "RGB", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), layout="NHWC"
        ),
        extra={
            "decoder": "centernet",
            "labels": labels,
            "outputs": {"detections": "dets", "heatmap": "heat"},
            "nms_iou": 0.5,
            **extra,
        },
    )
    write_manifest(m, tmp_path / "tiny.json")
    return m


def test_rows_are_thresholded_and_suppressed_per_class() -> None:
    dets = decode_centernet(
        ROWS, labels=LABELS, score_threshold=0.5, nms_iou=0.5, max_detections=10
    )
    assert [(d.label, round(d.score, 2)) for d in dets] == [("cat", 0.9), ("dog", 0.7)]
    assert (dets[0].x1, dets[0].y1, dets[0].x2, dets[0].y2) == pytest.approx((4, 4, 20, 28))
    lower = decode_centernet(
        ROWS, labels=LABELS, score_threshold=0.1, nms_iou=0.5, max_detections=2
    )
    assert [d.score for d in lower] == pytest.approx([0.9, 0.7])  # best first, capped


def test_a_class_the_labels_lack_is_an_error_not_a_skip() -> None:
    with pytest.raises(ModelStoreError, match="class 1; the manifest has 1 labels"):
        decode_centernet(ROWS, labels=["cat"], score_threshold=0.5, nms_iou=0.5, max_detections=9)


def test_detector_maps_back_through_the_letterbox(tmp_path: Path) -> None:
    det = CenterNetDetector(_manifest(tmp_path), provider="cpu")
    image = np.zeros((64, 128, 3), np.uint8)  # scale 0.25 into 32x32, placed top-left
    tensor, scale = det.input_tensor(image + 10)
    assert tensor.shape == (1, SIZE, SIZE, 3)  # NHWC, as the manifest says
    assert scale == 0.25
    assert (tensor[0, :16] == 10).all()
    assert (tensor[0, 16:] == 0).all()  # padded black
    dets = det.detect(image)
    assert [d.label for d in dets] == ["cat", "dog"]
    # Input box (4, 4, 20, 28) / 0.25 = (16, 16, 80, 112), clipped to the 128x64 image.
    assert (dets[0].x1, dets[0].y1, dets[0].x2, dets[0].y2) == pytest.approx((16, 16, 80, 64))


def test_classes_that_do_not_match_the_heatmap_are_refused(tmp_path: Path) -> None:
    m = _manifest(tmp_path, labels=["cat", "dog", "mug"])
    with pytest.raises(
        ModelStoreError, match=r"heatmap output has shape \[1, 8, 8, 2\].*3 labels"
    ):
        CenterNetDetector(m, provider="cpu")


def test_bad_manifest_extra_and_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="'outputs' must name"):
        CenterNetDetector(_manifest(tmp_path, outputs=["dets"]), provider="cpu")
    with pytest.raises(ModelStoreError, match="pad_value"):
        CenterNetDetector(_manifest(tmp_path, pad_value=[300, 0, 0]), provider="cpu")
    with pytest.raises(ModelStoreError, match="not a CenterNet"):
        CenterNetDetector(_manifest(tmp_path, decoder="nanodet"), provider="cpu")
    good = _manifest(tmp_path)
    with pytest.raises(InvalidInputError, match="score_threshold"):
        CenterNetDetector(good, provider="cpu", score_threshold=-1)
    data = good.onnx.read_bytes()
    good.onnx.write_bytes(data[: len(data) // 2])  # truncated model file
    with pytest.raises(ModelStoreError, match="does not match the SHA-256"):
        CenterNetDetector(good, provider="cpu")


def test_not_an_image_is_an_input_error(tmp_path: Path) -> None:
    det = CenterNetDetector(_manifest(tmp_path), provider="cpu")
    with pytest.raises(InvalidInputError):
        det.detect(np.zeros((4, 4), np.float32))
