"""The object/pet path on tiny ONNX graphs built here: these prove plumbing, not quality.

The "detectors" output a fixed tensor (a Constant plus a zero-weight dependence on the input,
so the batch axis flows), in the YOLOv8 and YOLOv5 layouts, so the decoded boxes are known
exactly: letterbox mapping, class names, thresholds and class-wise NMS are checked against
hand-computed values. The "embedder" is global average pooling times a fixed matrix, so a crop's
vector is a function of its mean colour. No network, no real weights.
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.detect import Detection
from rap_edge.detect._yolo import YoloDetector, letterbox
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.memory import Memory
from rap_edge.models import Encoder, ModelManifest, Preprocess, sha256_file, write_manifest
from rap_edge.pipeline._objects import (
    ObjectEmbedder,
    ObjectModels,
    detector_classes,
    embed_objects_in_memory,
    is_object_category,
    object_categories,
    proposal_windows,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

onnx = pytest.importorskip("onnx")

SIZE = 64  # detector input (square)
LABELS = ["cup", "dog", "person"]
# Anchors in input pixels: (cx, cy, w, h, class, score).
ANCHORS = [
    (32, 32, 20, 10, 0, 0.9),  # cup                      -> kept
    (33, 32, 20, 10, 0, 0.8),  # cup, IoU ~0.9 with #0     -> suppressed (same class)
    (33, 32, 20, 10, 1, 0.7),  # dog, same box             -> kept (other class)
    (16, 20, 8, 8, 2, 0.6),  # person                   -> kept
    (48, 48, 10, 10, 0, 0.2),  # cup under the threshold   -> dropped
    (32, 4, 10, 4, 1, 0.95),  # dog in the letterbox padding -> dropped
]
# The 128x96 frame letterboxed into 64x64: scale 0.5, 8 px of padding on top.
FRAME_W, FRAME_H = 128, 96
EXPECTED = [
    ("cup", 0.9, (44.0, 38.0, 84.0, 58.0)),
    ("dog", 0.7, (46.0, 38.0, 86.0, 58.0)),
    ("person", 0.6, (24.0, 16.0, 40.0, 32.0)),
]
EMBED_DIM = 8


def _raw(fmt: str, *, normalized: bool = False) -> np.ndarray:
    """The head's output for one image: [4 + C, A] (yolov8) or [A, 5 + C] (yolov5)."""
    rows = []
    for cx, cy, w, h, cls, score in ANCHORS:
        box = np.array([cx, cy, w, h], dtype=np.float32) / (SIZE if normalized else 1)
        scores = np.full(len(LABELS), 0.01, dtype=np.float32)
        if fmt == "yolov8":
            scores[cls] = score
            rows.append(np.concatenate([box, scores]))
        else:  # objectness x class score = score
            scores[cls] = 1.0
            rows.append(np.concatenate([box, [score], scores]))
    arr = np.stack(rows).astype(np.float32)
    return arr.T.copy() if fmt == "yolov8" else arr


def _constant_onnx(
    path: Path, raw: np.ndarray, *, batch: int | str = "N", size: int = SIZE
) -> Path:
    """[batch, 3, size, size] -> raw broadcast over the batch (0 x mean(input) + raw)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["images", "axes"], ["mean4"], keepdims=1),
        helper.make_node("Squeeze", ["mean4", "last"], ["mean"]),  # [batch, 1, 1]
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "raw"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, *raw.shape])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
            helper.make_tensor("last", TensorProto.INT64, [1], [3]),
            numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero"),
            numpy_helper.from_array(raw[None].astype(np.float32), "raw"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _write_detector(  # noqa: PLR0913
    folder: Path,
    fmt: str = "yolov8",
    *,
    name: str = "yolo",
    batch: int | str = "N",
    raw: np.ndarray | None = None,
    task: str = "detect",
    **extra: object,
) -> Path:
    onnx_path = _constant_onnx(
        folder / f"{name}.onnx", _raw(fmt) if raw is None else raw, batch=batch
    )
    manifest = ModelManifest(
        name=name,
        task=task,
        encoder_id=f"{name}@test",
        onnx=onnx_path,
        onnx_sha256=sha256_file(onnx_path),
        input_name="images",
        output_name="output0",
        dim=len(LABELS),
        metric="none",
        threshold=0.25,
        preprocess=Preprocess(
            height=SIZE,
            width=SIZE,
            color="RGB",
            scale=1 / 255,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
        ),
        extra={"decoder": "yolo", "format": fmt, "labels": LABELS, "nms_iou": 0.45, **extra},
    )
    path = folder / f"{name}.json"
    write_manifest(manifest, path)
    return path


def _write_embedder(folder: Path, name: str = "mobilenetv2") -> Path:
    """[N, 3, 16, 16] -> GlobalAveragePool -> Flatten -> x W[3, 8]: a mean-colour embedder."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(7).standard_normal((3, EMBED_DIM)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "embed",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMBED_DIM])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx_path = folder / f"{name}.onnx"
    onnx.save(model, str(onnx_path))
    manifest = ModelManifest(
        name=name,
        task="embed",
        encoder_id=f"{name}-tiny@test",
        onnx=onnx_path,
        onnx_sha256=sha256_file(onnx_path),
        input_name="images",
        output_name="embedding",
        dim=EMBED_DIM,
        metric="cosine",
        threshold=0.8,
        preprocess=Preprocess(
            height=16,
            width=16,
            color="RGB",
            scale=1 / 255,
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
        ),
    )
    path = folder / f"{name}.json"
    write_manifest(manifest, path)
    return path


def _frame(w: int = FRAME_W, h: int = FRAME_H) -> np.ndarray:
    return np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _got(dets: list[Detection]) -> list[tuple[str, float, tuple[float, ...]]]:
    return [(d.label, round(d.score, 5), (d.x1, d.y1, d.x2, d.y2)) for d in dets]


# --- the YOLO decoder -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yolov8", "yolov5"])
def test_yolo_decoding_maps_letterboxed_boxes_back_exactly(tmp_path: Path, fmt: str) -> None:
    det = YoloDetector(_write_detector(tmp_path, fmt), provider="cpu")
    assert (det.format, det.labels, det.num_classes, det.provider) == (fmt, LABELS, 3, "cpu")
    got = _got(det.detect(_frame()))
    assert got == [(label, score, box) for label, score, box in EXPECTED]
    # Another frame size in the same batch: 256x128 -> scale 0.25, 16 px of padding on top.
    wide, small = det.detect_batch([_frame(256, 128), _frame()])
    assert small == det.detect(_frame())
    assert _got(wide)[0] == ("cup", 0.9, (88.0, 44.0, 168.0, 84.0))
    assert det.detect_batch([]) == []


def test_yolo_threshold_nms_and_stretch_options(tmp_path: Path) -> None:
    path = _write_detector(tmp_path)
    assert [d.label for d in YoloDetector(path, score_threshold=0.65).detect(_frame())] == [
        "cup",
        "dog",
    ]
    assert YoloDetector(path, score_threshold=1.0).detect(_frame()) == []
    loose = YoloDetector(_write_detector(tmp_path, nms_iou=0.95), provider="cpu")
    assert [(d.label, round(d.score, 5)) for d in loose.detect(_frame())] == [
        ("cup", 0.9),
        ("cup", 0.8),
        ("dog", 0.7),
        ("person", 0.6),
    ]
    # Stretched instead of letterboxed: x scales by 128/64, y by 96/64; the padding box lives.
    stretched = YoloDetector(_write_detector(tmp_path, letterbox=False), provider="cpu")
    got = stretched.detect(_frame())
    assert got[0].label == "dog" and got[0].score == pytest.approx(0.95)
    np.testing.assert_allclose(got[0].box, [54, 3, 74, 9], atol=1e-4)
    np.testing.assert_allclose(got[1].box, [44, 40.5, 84, 55.5], atol=1e-4)
    # Boxes as shares of the input size.
    norm = YoloDetector(
        _write_detector(tmp_path, raw=_raw("yolov8", normalized=True), normalized=True),
        provider="cpu",
    )
    assert [
        (lab, s, tuple(round(v, 3) for v in b)) for lab, s, b in _got(norm.detect(_frame()))
    ] == EXPECTED
    # At most max_detections, best first.
    assert [
        d.label for d in YoloDetector(_write_detector(tmp_path, max_detections=1)).detect(_frame())
    ] == ["cup"]


def test_yolo_fixed_batch_model_runs_image_by_image(tmp_path: Path) -> None:
    det = YoloDetector(_write_detector(tmp_path, batch=1), provider="cpu")
    out = det.detect_batch([_frame(), _frame(), _frame(64, 64)])
    assert [len(d) for d in out] == [3, 3, 4]  # a square frame has no padding: 4 boxes


def test_letterbox_pads_with_grey() -> None:
    img = np.full((96, 128, 3), 7, np.uint8)
    boxed, scale, left, top = letterbox(img, 64, 64)
    assert boxed.shape == (64, 64, 3) and (scale, left, top) == (0.5, 0, 8)
    assert (boxed[:8] == 114).all() and (boxed[56:] == 114).all() and (boxed[8:56] == 7).all()
    boxed, scale, left, top = letterbox(np.zeros((50, 101, 3), np.uint8), 64, 64)
    assert boxed.shape == (64, 64, 3) and (left, top) == (0, 16)
    assert (boxed[:16] == 114).all() and (boxed[48:] == 114).all() and (boxed[16:48] == 0).all()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda d: d["extra"].update(labels=["cup", "dog"]),
            r"yolo\.json: manifest lists 2 labels, but the model's yolov8 output has 3 classes",
        ),
        (lambda d: d["extra"].update(labels=[]), r"yolo\.json: .*'labels' must be a non-empty"),
        (lambda d: d["extra"].update(decoder="ssd"), r"yolo\.json: .*is not a YOLO detector"),
        (lambda d: d.update(task="embed"), r"yolo\.json: task 'embed'.*is not a YOLO detector"),
        (lambda d: d["extra"].update(format="yolov9"), r"yolo\.json: .*'format' must be one"),
        (lambda d: d["extra"].update(nms_iou=2), r"yolo\.json: .*'nms_iou' must be a number"),
        (lambda d: d["extra"].update(letterbox="yes"), r"yolo\.json: .*'letterbox' must be"),
        (
            lambda d: d["preprocess"].update(height=32, width=32),
            r"yolo\.json: manifest input size 32x32 .* does not match the model's 64x64",
        ),
    ],
)
def test_bad_detector_manifests_name_the_file(tmp_path: Path, edit: object, match: str) -> None:
    path = _write_detector(tmp_path)
    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    with pytest.raises(ModelStoreError, match=match):
        YoloDetector(path, provider="cpu")


def test_label_count_is_checked_on_the_real_output(tmp_path: Path) -> None:
    det = YoloDetector(_write_detector(tmp_path, fmt="yolov5"), provider="cpu")
    det.labels = [*LABELS, "cat"]  # as if the model's output axis were dynamic
    with pytest.raises(
        ModelStoreError,
        match=r"yolo\.json: manifest lists 4 labels, but the "
        r"model's yolov5 output has 3 classes",
    ):
        det.detect(_frame())


def test_missing_detector_files_and_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match=r"none\.json: manifest is missing"):
        YoloDetector(tmp_path / "none.json")
    path = _write_detector(tmp_path)
    (tmp_path / "yolo.onnx").unlink()
    with pytest.raises(ModelStoreError, match=r"yolo\.onnx: model file is missing"):
        YoloDetector(path)
    det = YoloDetector(_write_detector(tmp_path), provider="cpu")
    with pytest.raises(InvalidInputError, match="score_threshold must be in 0..1"):
        YoloDetector(tmp_path / "yolo.json", score_threshold=1.5)
    for bad, match in [
        (np.zeros((4, 4), np.uint8), r"image #1 must be a BGR uint8 image \[H, W, 3\], got uint8"),
        (np.zeros((4, 4, 3), np.float32), "got float32"),
        (np.zeros((0, 4, 3), np.uint8), r"got uint8 \(0, 4, 3\)"),
        ([[1, 2, 3]], "got list"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            det.detect(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="image #2"):
        det.detect_batch([_frame(), np.zeros((4, 4, 4), np.uint8)])


# --- proposal windows -------------------------------------------------------------------------


def test_proposal_windows_count_order_and_coverage() -> None:
    boxes = proposal_windows(640, 480)
    assert len(boxes) == 21
    assert boxes[0] == (0.0, 0.0, 640.0, 480.0)
    assert boxes == proposal_windows(640, 480)  # deterministic
    sides = [round(b[2] - b[0]) for b in boxes[1:]]
    assert sides == [480] * 2 + [288] * 6 + [168] * 12
    assert all(b[2] - b[0] == b[3] - b[1] for b in boxes[1:])  # square
    assert all(0 <= b[0] < b[2] <= 640 and 0 <= b[1] < b[3] <= 480 for b in boxes)
    for side in (480, 288, 168):  # each scale covers the whole frame
        covered = np.zeros((480, 640), bool)
        for x1, y1, x2, y2 in (b for b in boxes[1:] if b[2] - b[0] == side):
            covered[int(y1) : int(y2), int(x1) : int(x2)] = True
        assert covered.all()
    assert len(proposal_windows(640, 480, overlap=0.25)) == 29
    dense = proposal_windows(640, 480, overlap=0.5)
    assert len(dense) == 50
    row = [b for b in dense if b[2] - b[0] == 168 and b[1] == 0]
    assert all((a[2] - b[0]) / 168 >= 0.5 for a, b in itertools.pairwise(row))
    assert len(proposal_windows(480, 480)) == 1 + 4 + 9  # the scale-1 window is the frame
    # side round(1.5) = 2: three columns (0, 2, 3) and two rows (0, 1) cover 5x3
    assert proposal_windows(5, 3, scales=(0.5,)) == [
        (0, 0, 5, 3),
        (0, 0, 2, 2),
        (2, 0, 4, 2),
        (3, 0, 5, 2),
        (0, 1, 2, 3),
        (2, 1, 4, 3),
        (3, 1, 5, 3),
    ]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0, "height": 4}, "width must be a positive integer"),
        ({"width": 4, "height": 4.5}, "height must be a positive integer"),
        ({"width": 4, "height": 4, "overlap": 0.95}, "overlap must be"),
        ({"width": 4, "height": 4, "scales": (0.0,)}, "scales must be"),
        ({"width": 4000, "height": 4000, "scales": (0.05,), "overlap": 0.9}, "more than 1000"),
    ],
)
def test_proposal_windows_refuse_bad_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        proposal_windows(**kwargs)  # type: ignore[arg-type]


# --- ObjectModels -----------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    _write_embedder(folder)
    _write_detector(folder)
    return folder


def test_object_models_with_a_detector_filter_by_category(model_dir: Path) -> None:
    models = ObjectModels.load(model_dir, detector="yolo.json", provider="cpu")
    assert models.detector is not None and models.labels == LABELS
    assert models.encoder_id == "mobilenetv2-tiny@test"
    frame = _frame()
    assert [d.label for d in models.propose(frame)] == ["cup", "dog", "person"]
    assert [d.label for d in models.propose(frame, {"Cup"})] == ["cup"]
    assert [d.label for d in models.propose(frame, {"dog", "CUP ", "mug"})] == ["cup", "dog"]
    assert models.propose(frame, set()) == []
    assert models.undetectable({"dog", "Mug", "Spaceship"}) == {"Spaceship"}  # mug <- cup
    models.min_box_px = 17  # the person box is 16 x 16
    assert [d.label for d in models.propose(frame)] == ["cup", "dog"]
    with pytest.raises(InvalidInputError, match="image must be a BGR uint8 image"):
        models.propose(np.zeros((4, 4), np.uint8))


def test_object_models_without_a_detector_use_windows(model_dir: Path) -> None:
    models = ObjectModels.load(model_dir, provider="cpu")
    assert models.detector is None and models.labels is None
    frame = np.zeros((480, 640, 3), np.uint8)
    props = models.propose(frame, {"mug"})
    assert len(props) == 21 and {(d.label, d.score) for d in props} == {("proposal", 1.0)}
    assert tuple(props[0].box) == (0, 0, 640, 480)
    assert models.propose(frame, []) == []
    assert models.undetectable({"mug"}) == set()
    crops = models.crops(frame, props)
    assert [c.shape[:2] for c in crops[:4]] == [(480, 640), (480, 480), (480, 480), (288, 288)]
    vectors = models.embed(crops)
    assert vectors.shape == (21, EMBED_DIM) and vectors.dtype == np.float32
    assert models.embed([]).shape == (0, EMBED_DIM)


def test_crops_are_full_resolution_and_clipped(model_dir: Path) -> None:
    frame = _frame(1280, 960)
    det = Detection(440.0, 380.0, 840.0, 580.0, 0.9, "cup")
    (crop,) = ObjectModels.crops(frame, [det])
    assert crop.shape == (200, 400, 3)
    np.testing.assert_array_equal(crop, frame[380:580, 440:840])
    assert crop.base is None  # a copy, not a view of the frame buffer
    (wide,) = ObjectModels.crops(frame, [np.array([440, 380, 840, 580])], margin=0.5)
    np.testing.assert_array_equal(wide, frame[280:680, 240:1040])
    (edge,) = ObjectModels.crops(frame, [(-50.5, 900.2, 30.0, 2000.0)])
    np.testing.assert_array_equal(edge, frame[900:960, 0:30])
    with pytest.raises(InvalidInputError, match=r"box #2 .* has no pixels inside"):
        ObjectModels.crops(frame, [det, (2000, 0, 2100, 10)])
    with pytest.raises(InvalidInputError, match="box #1: expected"):
        ObjectModels.crops(frame, [(1, 2, 3)])
    with pytest.raises(InvalidInputError, match="box #1: coordinates must be finite"):
        ObjectModels.crops(frame, [(0, 0, float("nan"), 5)])
    with pytest.raises(InvalidInputError, match="margin must be"):
        ObjectModels.crops(frame, [det], margin=-1)
    with pytest.raises(InvalidInputError, match="got NoneType"):
        ObjectModels.crops(None, [det])  # type: ignore[arg-type]
    assert ObjectModels.load(model_dir, provider="cpu").crops(frame, []) == []


def test_object_models_load_names_missing_files(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(ModelStoreError, match="model folder not found"):
        ObjectModels.load(tmp_path / "nowhere")
    with pytest.raises(ModelStoreError, match=r"other\.json: manifest is missing"):
        ObjectModels.load(model_dir, encoder="other.json")
    with pytest.raises(ModelStoreError, match=r"nope\.json: manifest is missing"):
        ObjectModels.load(model_dir, detector="nope.json")
    with pytest.raises(ModelStoreError, match=r"mobilenetv2\.json: task 'embed'.*not a YOLO"):
        ObjectModels.load(model_dir, detector="mobilenetv2.json")
    with pytest.raises(ModelStoreError, match=r"yolo\.json: task 'detect' is not an image emb"):
        ObjectModels.load(model_dir, encoder="yolo.json")
    (model_dir / "mobilenetv2.onnx").unlink()
    with pytest.raises(ModelStoreError, match=r"mobilenetv2\.onnx: model file is missing"):
        ObjectModels.load(model_dir)


# --- the memory -------------------------------------------------------------------------------


def _png(color: tuple[int, int, int], seed: int) -> bytes:
    img = np.empty((40, 50, 3), np.uint8)
    img[:] = color
    img[0, : seed + 1] = 0  # distinct files for the same colour
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def test_embed_objects_in_memory_skips_people_and_finds_the_object(
    tmp_path: Path, model_dir: Path
) -> None:
    models = ObjectModels.load(model_dir, detector="yolo.json", provider="cpu")
    red, blue = (0, 0, 255), (255, 0, 0)
    with Memory.init(tmp_path / "mem") as mem:
        mem.add("Ann", images=[_png((90, 120, 200), 1)], category="person")
        mem.add("my mug", images=[_png(red, 2), _png(red, 3)], category="cup")
        mem.add("Bo", images=[_png(blue, 4)], category="Dog")
        assert object_categories(mem) == {"cup", "dog"}
        assert not is_object_category(" Person") and is_object_category("dog")
        assert embed_objects_in_memory(mem, models.encoder, batch_size=2) == 3
        left = mem.pending(models.encoder_id)
        assert [mem.get(r.concept_id).name for r in left] == ["Ann"]
        assert embed_objects_in_memory(mem, ObjectEmbedder(models)) == 0
        # A frame with a red mug where the detector's cup box is: the crop finds "my mug".
        frame = np.full((FRAME_H, FRAME_W, 3), 128, np.uint8)
        frame[38:58, 44:84] = red
        props = models.propose(frame, object_categories(mem))
        assert [d.label for d in props] == ["cup", "dog"]
        vectors = models.embed(models.crops(frame, props))
        hits = mem.search(vectors, k=1, encoder=models.encoder_id)
        assert hits[0][0].name == "my mug" and hits[0][0].score == pytest.approx(1.0, abs=1e-3)
        with pytest.raises(InvalidInputError, match="batch_size must be in 1..1024"):
            embed_objects_in_memory(mem, models.encoder, batch_size=0)


def test_object_embedder_is_the_encoder_on_whole_images(model_dir: Path) -> None:
    enc = Encoder(model_dir / "mobilenetv2.json", provider="cpu")
    emb = ObjectEmbedder(enc)
    assert (emb.encoder_id, emb.dim) == (enc.encoder_id, EMBED_DIM)
    img = _frame()
    np.testing.assert_array_equal(emb.embed([img]), enc.embed([img]))
    assert ObjectEmbedder(ObjectModels(encoder=enc)).encoder_id == enc.encoder_id


# --- the detector path: category mapping, square crops, enrollment crop ----------------------


def test_category_mapping_is_explicit() -> None:
    coco = ["dog", "cat", "cup", "handbag", "backpack", "suitcase", "teddy bear"]
    assert detector_classes("dog", coco) == {"dog"}
    assert detector_classes(" Mug ", coco) == {"cup"}
    assert detector_classes("bag", coco) == {"handbag", "backpack", "suitcase"}
    assert detector_classes("toy", coco) == {"teddy bear"}
    assert detector_classes("pet", coco) == {"dog", "cat"}
    assert detector_classes("spaceship", coco) == set()
    assert detector_classes("mug", ["dog"]) == set()  # only classes the detector has


def test_mapped_categories_use_the_detector_and_unmapped_fall_back_to_windows(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = ObjectModels.load(model_dir, detector="yolo.json", provider="cpu")
    frame = _frame()
    assert [d.label for d in models.propose(frame, {"mug"})] == ["cup"]
    assert models.compatible("mug", "cup") and not models.compatible("mug", "dog")
    assert not models.compatible("person", "person")  # faces never go to the object path
    with caplog.at_level("WARNING"):
        props = models.propose(frame, {"spaceship"})
    assert len(props) == 21 and props[0].label == "proposal"
    assert "'spaceship' has no detector class" in caplog.text
    assert "searched with windows" in caplog.text
    assert models.compatible("spaceship", "proposal")
    # Both kinds in one memory: the detector's boxes for the mug, then windows for the
    # spaceship; a window fits only the category the detector has no class for.
    props = models.propose(frame, {"mug", "spaceship"})
    assert [d.label for d in props[:1]] == ["cup"]
    assert len(props) == 22 and {d.label for d in props[1:]} == {"proposal"}
    assert not models.compatible("mug", "proposal")
    assert not models.compatible("spaceship", "cup")


def test_square_crops_keep_the_aspect_and_pad_at_the_border() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = 255
    (tall,) = ObjectModels.square_crops(image, [(90, 10, 110, 90)], context=0.0)
    assert tall.shape == (80, 80, 3)  # 20 x 80 box -> 80 x 80 with the image around it
    assert tall[:, :40].mean() == 255 and tall[:, 41:].mean() == 0
    (edge,) = ObjectModels.square_crops(image, [(0, 0, 50, 50)], context=0.1)
    assert edge.shape == (60, 60, 3)  # 5 px past the top-left edge, replicated
    with pytest.raises(InvalidInputError, match="no pixels inside"):
        ObjectModels.square_crops(image, [(300, 0, 400, 50)])


def test_enrollment_crops_the_largest_matching_object(model_dir: Path) -> None:
    models = ObjectModels.load(model_dir, detector="yolo.json", provider="cpu")
    frame = _frame()
    dogs = [d for d in models.propose(frame) if d.label == "dog"]
    crop = models.enrollment_crop(frame, "dog")
    (want,) = ObjectModels.square_crops(frame, dogs[:1])
    assert crop.shape == want.shape and np.array_equal(crop, want)
    models.min_box_px = 10_000  # now no box survives: nothing to enroll
    with pytest.raises(InvalidInputError, match=r"no cup found .*'mug'.* --whole-image"):
        models.enrollment_crop(frame, "mug")
    assert models.enrollment_crop(frame, "mug", whole_image=True) is frame
    assert models.enrollment_crop(frame, "spaceship") is frame  # no class: whole, warned
    windows = ObjectModels.load(model_dir, detector="windows", provider="cpu")
    assert windows.detector is None
    assert windows.enrollment_crop(frame, "dog") is frame


def test_nanodet_is_the_default_detector_when_exported(model_dir: Path) -> None:
    from tests.detect.test_nanodet import _manifest

    m = _manifest(model_dir)
    (model_dir / "tiny.json").rename(model_dir / "nanodet.json")
    assert m.onnx.parent == model_dir
    models = ObjectModels.load(model_dir, provider="cpu")
    assert type(models.detector).__name__ == "NanoDetDetector"
    assert ObjectModels.load(model_dir, detector="windows", provider="cpu").detector is None


def test_a_box_nested_in_another_of_its_class_is_one_object_kept_by_its_match() -> None:
    from rap_edge.detect import Detection
    from rap_edge.pipeline._pipeline import one_box_per_object
    from rap_edge.pipeline._types import Candidate

    rex = Candidate("c1", "Rex", "dog", 0.85)
    body = Detection(40, 40, 120, 110, 0.47, "dog")  # the dog's body
    around = Detection(20, 30, 180, 150, 0.48, "dog")  # a wider box about it (IoU 0.29)
    other = Detection(300, 40, 380, 110, 0.9, "dog")  # another dog, elsewhere
    cup = Detection(50, 50, 70, 70, 0.6, "cup")  # inside, but another class
    found = [
        (around, "unknown", None, [Candidate("c1", "Rex", "dog", 0.79)]),
        (body, "known", rex, [rex]),
        (other, "unknown", None, []),
        (cup, "unknown", None, []),
    ]
    kept = one_box_per_object(found)  # type: ignore[arg-type]
    assert [k[0] for k in kept] == [body, other, cup]  # the named box stays, order kept
    # Neither named: the higher similarity stays.
    found[1] = (body, "unknown", None, [Candidate("c1", "Rex", "dog", 0.6)])
    assert [k[0] for k in one_box_per_object(found)] == [around, other, cup]  # type: ignore[arg-type]


def test_only_an_unnamed_face_inside_a_named_pet_is_dropped_as_the_pets_face() -> None:
    from rap_edge.pipeline import Recognition
    from rap_edge.pipeline._pipeline import _without_pet_faces
    from rap_edge.pipeline._types import Candidate

    def rec(
        box: tuple[float, float, float, float], kind: str, name: str | None, cat: str
    ) -> Recognition:
        cands = (Candidate("c-" + (name or "x"), name or "x", cat, 0.9),)
        known = name is not None
        return Recognition(
            box, kind, 0.9, 1, "known" if known else "unknown",
            cands[0].concept_id if known else None, name, 0.9, cands,
        )  # fmt: skip

    rex = rec((0, 0, 200, 200), "object", "Rex", "dog")
    mug = rec((300, 0, 500, 200), "object", "Mug", "mug")
    cat = rec((0, 300, 200, 500), "object", None, "cat")  # an unnamed cat
    faces = [
        rec((50, 50, 120, 120), "face", None, "person"),  # Rex's own face: dropped
        rec((60, 60, 110, 110), "face", "Ana", "person"),  # a named person: kept
        rec((350, 50, 420, 120), "face", None, "person"),  # inside the mug: not an animal
        rec((50, 350, 120, 420), "face", None, "person"),  # inside an unnamed cat: kept
        rec((150, 150, 260, 260), "face", None, "person"),  # a quarter inside Rex: kept
    ]
    kept = _without_pet_faces(faces, [rex, mug, cat])
    assert [r.box for r in kept] == [f.box for f in faces[1:]]
    assert _without_pet_faces(faces, [mug, cat]) == faces


def test_centernet_is_selectable_by_its_manifest(model_dir: Path) -> None:
    from tests.detect.test_centernet import _manifest

    _manifest(model_dir)
    (model_dir / "tiny.json").rename(model_dir / "centernet.json")
    models = ObjectModels.load(model_dir, detector="centernet.json", provider="cpu")
    assert type(models.detector).__name__ == "CenterNetDetector"
    assert models.labels == ["cat", "dog"]


@pytest.mark.network
def test_an_object_track_keeps_its_name_through_a_pass_that_misses(
    model_dir: Path, face_models: Exported, tmp_path: Path
) -> None:
    """Object tracks vote like face tracks (plumbing: the constant tiny detector always boxes
    the same dog; the tiny mean-colour embedder matches the box's colour). Three passes see
    Rex's colour, then others: the vote keeps "Rex" while he holds a strict majority."""
    from rap_edge.pipeline import FaceModels, Pipeline, PipelineConfig, embed_objects_in_memory

    objects = ObjectModels.load(model_dir, detector="yolo.json", provider="cpu")
    faces = FaceModels.load(face_models.out, provider="cpu")
    frame = np.full((FRAME_H, FRAME_W, 3), 128, np.uint8)
    dog = next(d for d in objects.propose(frame) if d.label == "dog")
    x1, y1, x2, y2 = (round(v) for v in (dog.x1, dog.y1, dog.x2, dog.y2))

    def with_dog(color: tuple[int, int, int]) -> np.ndarray:
        f = frame.copy()
        f[y1:y2, x1:x2] = color
        return f

    rex = tmp_path / "rex.png"
    cv2.imwrite(str(rex), np.full((32, 32, 3), (30, 160, 220), np.uint8))
    mem = Memory.init(tmp_path / "mem")
    mem.add("Rex", images=[rex], category="dog")
    assert embed_objects_in_memory(mem, objects.encoder) == 1
    config = PipelineConfig(object_every=1, scene_cut=0.0)
    pipe = Pipeline(faces, mem, objects=objects, config=config)

    def rex_seen(f: np.ndarray) -> tuple[str, str | None]:
        (r,) = [r for r in pipe.process(f).recognitions if r.kind == "object"]
        return r.decision, r.name

    for _ in range(3):
        assert rex_seen(with_dog((30, 160, 220))) == ("known", "Rex")
    other = with_dog((220, 40, 40))
    alone = Pipeline(faces, mem, objects=objects, config=config)
    (miss,) = [r for r in alone.process(other).recognitions if r.kind == "object"]
    assert miss.decision == "unknown"  # this pass alone names nobody
    assert rex_seen(other) == ("known", "Rex")  # Rex in 3 of 4 votes
    assert rex_seen(other) == ("known", "Rex")  # 3 of 5
    assert rex_seen(other)[0] == "uncertain"  # 3 of 6: no strict majority
    assert rex_seen(other) == ("unknown", None)  # unknown in 4 of 7
