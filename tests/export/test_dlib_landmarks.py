"""dlib 5-point landmark model: parser, parity with dlib, box map, and the runtime face path.

The reference is dlib itself (``dlib-bin``) on real photos (face_recognition's test images),
pulled from PyPI once per session by the ``face_models`` fixture.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.errors import InvalidInputError, ModelStoreError

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def predictor(face_models: Exported):
    from rap_edge.detect import ShapePredictor

    return ShapePredictor(face_models.out / "dlib_shape_5.json")


def test_parser_reads_the_whole_cascade(face_models: Exported) -> None:
    from export import dlib_landmarks as dl

    arrays = dl.parse_dat(face_models.store.file(dl.CARRIER, dl.WEIGHTS))  # type: ignore[attr-defined]
    assert arrays["initial_shape"].shape == (10,)
    assert arrays["split_thresh"].shape == (15, 500, 15)
    assert arrays["leaf_values"].shape == (15, 500, 16, 10)
    assert arrays["anchor_idx"].shape == (15, 800)
    assert arrays["deltas"].shape == (15, 800, 2)
    assert arrays["anchor_idx"].min() >= 0 and arrays["anchor_idx"].max() < 5
    assert arrays["split_idx1"].max() < 800


def test_parser_rejects_a_truncated_or_padded_file(face_models: Exported, tmp_path: Path) -> None:
    from export import dlib_landmarks as dl
    from export.dlib_resnet import DlibFormatError

    data = face_models.store.file(dl.CARRIER, dl.WEIGHTS).read_bytes()  # type: ignore[attr-defined]
    (tmp_path / "short.dat").write_bytes(data[:-3])
    (tmp_path / "long.dat").write_bytes(data + b"\x01\x00")
    with pytest.raises(DlibFormatError, match="end of file"):
        dl.parse_dat(tmp_path / "short.dat")
    with pytest.raises(DlibFormatError, match="bytes left"):
        dl.parse_dat(tmp_path / "long.dat")


def _dlib_faces(face_models: Exported) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rgb, dlib box, dlib landmarks) for every HOG face in the check photos."""
    import dlib

    from export import dlib_landmarks as dl

    hog = dlib.get_frontal_face_detector()
    ref = dlib.shape_predictor(str(face_models.store.file(dl.CARRIER, dl.WEIGHTS)))  # type: ignore[attr-defined]
    out = []
    for path in face_models.photos:
        rgb = np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])
        for box in hog(rgb, 1):
            pts = np.array([[p.x, p.y] for p in ref(rgb, box).parts()], dtype=np.float64)
            out.append((rgb, np.array([box.left(), box.top(), box.right(), box.bottom()]), pts))
    return out


def test_landmarks_equal_dlibs_on_real_faces_in_colour_and_grey(
    face_models: Exported, predictor
) -> None:
    import dlib

    from export import dlib_landmarks as dl

    ref = dlib.shape_predictor(str(face_models.store.file(dl.CARRIER, dl.WEIGHTS)))  # type: ignore[attr-defined]
    faces = _dlib_faces(face_models)
    assert len(faces) == 4
    for rgb, box, want in faces:
        # dlib returns whole pixels; the numpy cascade, rounded the same way, matches exactly.
        assert np.array_equal(np.floor(predictor.predict(rgb, box) + 0.5), want)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        want_gray = np.array(
            [[p.x, p.y] for p in ref(gray, dlib.rectangle(*map(int, box))).parts()],
            dtype=np.float64,
        )
        assert np.array_equal(np.floor(predictor.predict(gray, box) + 0.5), want_gray)
        # Channel order does not matter: dlib's intensity is the channel mean.
        assert np.array_equal(predictor.predict(rgb[:, :, ::-1], box), predictor.predict(rgb, box))


def test_manifest_records_parity_box_map_and_the_measured_landmark_effect(
    face_models: Exported,
) -> None:
    data = json.loads((face_models.out / "dlib_shape_5.json").read_text())
    parity = data["parity"]
    assert parity["parity_exact_faces"] == "4/4"
    assert parity["parity_max_abs_px"] == 0.0
    _, _, sw, sh = data["extra"]["box_maps"]["res10-ssd-face"]
    assert 0.9 < sw < 1.3 and 0.6 < sh < 0.95  # the SSD's boxes are taller than dlib's
    mapped = parity["landmark_source"]["ssd+map+numpy"]
    raw = parity["landmark_source"]["ssd+numpy (no map)"]
    assert mapped["mean_error_pct_of_eye_distance"] < 2.0
    assert mapped["mean_error_pct_of_eye_distance"] < raw["mean_error_pct_of_eye_distance"]
    assert mapped["min_descriptor_cosine_to_textbook"] > 0.995


def test_runtime_face_path_separates_people(face_models: Exported, predictor) -> None:
    """SSD box -> box map -> numpy landmarks -> OpenCV chip -> ONNX descriptor, no dlib."""
    from rap_edge.detect import SsdFaceDetector, align_face
    from rap_edge.eval import cosine_rows
    from rap_edge.models import Encoder

    detector = SsdFaceDetector(face_models.out / "res10_ssd.json", provider="cpu")
    encoder = Encoder(face_models.out / "dlib_resnet.json", provider="cpu")
    names, chips = [], []
    for path in face_models.photos:
        bgr = cv2.imread(str(path))
        faces = detector.detect(bgr)
        assert len(faces) == 1, path.name
        pts = predictor.predict(bgr, faces[0].box, detector="res10-ssd-face")
        chips.append(align_face(bgr, pts))
        names.append(path.stem.rstrip("0123456789"))
    vec = encoder.embed(chips)
    same, diff = [], []
    for i in range(len(vec)):
        for j in range(i + 1, len(vec)):
            cos = float(cosine_rows(vec[i : i + 1], vec[j : j + 1])[0])
            (same if names[i] == names[j] else diff).append(cos)
    # Measured: obama/obama 0.954-0.973, obama/biden 0.812-0.827 (threshold 0.906).
    assert min(same) > encoder.manifest.threshold > max(diff)
    assert min(same) - max(diff) > 0.1


def test_bad_inputs_and_files_give_clear_errors(
    face_models: Exported, predictor, tmp_path: Path
) -> None:
    from rap_edge.detect import ShapePredictor

    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="box must be"):
        predictor.predict(img, [10, 10, 5, 20])
    with pytest.raises(InvalidInputError, match="box must be"):
        predictor.predict(img, [0, 0, np.nan, 10])
    with pytest.raises(InvalidInputError, match="uint8"):
        predictor.predict(img.astype(np.float32), [0, 0, 10, 10])
    with pytest.raises(ModelStoreError, match="no box map for detector 'yolo'"):
        predictor.predict(img, [0, 0, 10, 10], detector="yolo")
    # A box far outside the image still gives finite points (pixels outside read as 0).
    assert np.isfinite(predictor.predict(img, [500, 500, 600, 600])).all()

    manifest = json.loads((face_models.out / "dlib_shape_5.json").read_text())
    npz = (face_models.out / "dlib_shape_5.npz").read_bytes()
    (tmp_path / "dlib_shape_5.npz").write_bytes(npz[: len(npz) // 2])
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelStoreError, match=r"dlib_shape_5\.npz: SHA-256 differs"):
        ShapePredictor(tmp_path / "m.json")
    with pytest.raises(ModelStoreError, match=r"dlib_shape_5\.npz: not a landmark model"):
        ShapePredictor(tmp_path / "m.json", check_hash=False)
    (tmp_path / "dlib_shape_5.npz").unlink()
    with pytest.raises(ModelStoreError, match=r"shape_5\.npz: landmark model file is missing"):
        ShapePredictor(tmp_path / "m.json")
    with pytest.raises(ModelStoreError, match="is not a landmark model"):
        ShapePredictor(face_models.out / "dlib_resnet.json")
