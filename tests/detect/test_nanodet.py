"""NanoDet decoding: distribution head, anchors, class-wise NMS, manifest checks (tiny graphs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.detect._nanodet import (
    NanoDetDetector,
    anchor_points,
    decode_nanodet,
    distribution_distances,
    letterbox_to,
)
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models import ModelManifest, Preprocess, sha256_file, write_manifest

if TYPE_CHECKING:
    from pathlib import Path

onnx = pytest.importorskip("onnx")

SIZE = 32
STRIDES = (8, 16, 32)
REG = 3  # reg_max: 4 bins per side
LABELS = ["cat", "dog"]


def _onehot(side_bins: list[int]) -> np.ndarray:
    """Logits putting (almost) all mass on one bin per side."""
    out = np.full((4, REG + 1), -50.0, np.float32)
    for i, b in enumerate(side_bins):
        out[i, b] = 50.0
    return out.ravel()


def _outputs() -> dict[str, np.ndarray]:
    """Per stride scores [1, A, 2] and boxes [1, A, 16]; two objects planted."""
    out = {}
    for s in STRIDES:
        a = (SIZE // s) ** 2
        sc = np.zeros((1, a, len(LABELS)), np.float32)
        bx = np.zeros((1, a, 4 * (REG + 1)), np.float32)
        if s == 8:  # anchor (row 1, col 2): point (20, 12); a cat 1/2/3/1 strides away
            sc[0, 1 * 4 + 2, 0] = 0.9
            bx[0, 1 * 4 + 2] = _onehot([1, 1, 2, 1])
            sc[0, 1 * 4 + 3, 0] = 0.6  # the same cat seen from the next anchor: suppressed
            bx[0, 1 * 4 + 3] = _onehot([2, 1, 1, 1])
            sc[0, 1 * 4 + 1, 1] = 0.7  # a dog on top of it: another class, kept
            bx[0, 1 * 4 + 1] = _onehot([0, 1, 3, 1])
        out[f"s{s}"], out[f"b{s}"] = sc, bx
    return out


def _model(path: Path, outputs: dict[str, np.ndarray]) -> None:
    from onnx import TensorProto, helper, numpy_helper

    nodes, outs = [], []
    for name, arr in outputs.items():
        nodes.append(
            helper.make_node(
                "Constant", [], [name], value=numpy_helper.from_array(arr, name + "_v")
            )
        )
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
    graph = helper.make_graph(
        nodes,
        "tiny-nanodet",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        outs,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _manifest(tmp_path: Path, *, labels: list[str] = LABELS, **extra: object) -> ModelManifest:
    path = tmp_path / "tiny.onnx"
    if not path.exists():
        _model(path, _outputs())
    m = ModelManifest(
        name="tiny-nanodet",
        task="detect",
        encoder_id="tiny",
        onnx=path,
        onnx_sha256=sha256_file(path),
        input_name="images",
        output_name="s8",
        dim=len(labels),
        metric="none",
        threshold=0.5,
        preprocess=Preprocess(SIZE, SIZE, "BGR", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        extra={
            "decoder": "nanodet",
            "labels": labels,
            "strides": list(STRIDES),
            "outputs": [[f"s{s}", f"b{s}"] for s in STRIDES],
            "reg_max": REG,
            "center_offset": 0.5,
            **extra,
        },
    )
    write_manifest(m, tmp_path / "tiny.json")
    return m


def test_distribution_expectation_and_anchor_order() -> None:
    logits = np.zeros((1, 4 * (REG + 1)))  # uniform: expectation is the middle
    assert distribution_distances(logits, REG) == pytest.approx(np.full((1, 4), 1.5))
    d = distribution_distances(_onehot([0, 1, 2, 3])[None], REG)
    assert d == pytest.approx(np.array([[0, 1, 2, 3]]), abs=1e-6)
    pts = anchor_points(32, 8, 0.5)
    assert pts.shape == (16, 2)
    assert pts[0].tolist() == [4.0, 4.0]
    assert pts[1].tolist() == [12.0, 4.0]  # row-major: x varies first
    assert pts[4].tolist() == [4.0, 12.0]


def test_decode_distances_classes_and_classwise_nms() -> None:
    raw = _outputs()
    dets = decode_nanodet(
        [raw[f"s{s}"][0] for s in STRIDES],
        [raw[f"b{s}"][0] for s in STRIDES],
        strides=STRIDES,
        size=SIZE,
        reg_max=REG,
        offset=0.5,
        labels=LABELS,
        score_threshold=0.5,
        nms_iou=0.5,
        max_detections=10,
    )
    assert [(d.label, round(d.score, 2)) for d in dets] == [("cat", 0.9), ("dog", 0.7)]
    cat, dog = dets
    assert (cat.x1, cat.y1, cat.x2, cat.y2) == pytest.approx((12, 4, 36, 20), abs=1e-4)
    assert (dog.x1, dog.y1, dog.x2, dog.y2) == pytest.approx((12, 4, 36, 20), abs=1e-4)


def test_detector_maps_back_through_the_letterbox(tmp_path: Path) -> None:
    det = NanoDetDetector(_manifest(tmp_path), provider="cpu")
    image = np.zeros((64, 128, 3), np.uint8)  # scale 0.25 into 32x32, placed top-left
    dets = det.detect(image)
    assert [d.label for d in dets] == ["cat", "dog"]
    # Input box (12, 4, 36, 20) / 0.25 = (48, 16, 144, 80), clipped to the 128x64 image.
    assert (dets[0].x1, dets[0].y1, dets[0].x2, dets[0].y2) == pytest.approx(
        (48, 16, 128, 64), abs=1e-3
    )
    boxed, scale = letterbox_to(image + 200, SIZE, SIZE, [7, 7, 7])
    assert scale == 0.25
    assert (boxed[:16] == 200).all()
    assert (boxed[16:] == 7).all()


def test_classes_that_do_not_match_the_outputs_are_refused(tmp_path: Path) -> None:
    m = _manifest(tmp_path, labels=["cat", "dog", "mug"])
    with pytest.raises(ModelStoreError, match=r"3 labels.*\[1, 16, 3\]"):
        NanoDetDetector(m, provider="cpu")


def test_bad_manifest_extra_and_files_are_named(tmp_path: Path) -> None:
    m = _manifest(tmp_path, reg_max="ten")
    with pytest.raises(ModelStoreError, match="reg_max"):
        NanoDetDetector(m, provider="cpu")
    m = _manifest(tmp_path, outputs=[["s8", "b8"]])
    with pytest.raises(ModelStoreError, match="outputs"):
        NanoDetDetector(m, provider="cpu")
    good = _manifest(tmp_path)
    with pytest.raises(InvalidInputError, match="score_threshold"):
        NanoDetDetector(good, provider="cpu", score_threshold=2)
    data = good.onnx.read_bytes()
    good.onnx.write_bytes(data[: len(data) // 2])  # truncated model file
    with pytest.raises(ModelStoreError, match="does not match the SHA-256"):
        NanoDetDetector(good, provider="cpu")


def test_not_an_image_is_an_input_error(tmp_path: Path) -> None:
    det = NanoDetDetector(_manifest(tmp_path), provider="cpu")
    with pytest.raises(InvalidInputError):
        det.detect(np.zeros((4, 4), np.float32))
