"""align_face against dlib's own chips (dlib-bin is the reference; photos pulled once).

The chip-geometry test passes; the pixel/descriptor comparison is a strict xfail: dlib's
resampling at ~2x downscale is not reproduced yet (see rap_edge/detect/_align.py).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("dlib")

import dlib

from export import dlib_resnet as dr
from export._common import check_photos
from rap_edge.detect import TEMPLATE_5, align_face, chip_transform
from rap_edge.errors import InvalidInputError
from rap_edge.models import Encoder, ModelStore

pytestmark = pytest.mark.network


def _details(pts: np.ndarray, size: int = 150, padding: float = 0.25):
    fo = dlib.full_object_detection(
        dlib.rectangle(0, 0, 1, 1), [dlib.point(int(x), int(y)) for x, y in pts]
    )
    return dlib.get_face_chip_details(fo, size, padding)


def measure_template(padding: float = 0.25, scale: float = 1e6, rounds: int = 30) -> np.ndarray:
    """Re-measure TEMPLATE_5: fixed point of similarity image -> dlib rect/angle -> back."""
    rng = np.random.default_rng(1)
    t = (TEMPLATE_5 + padding) / (1 + 2 * padding)
    seen = []
    for _ in range(rounds):
        a = rng.uniform(-3, 3)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = np.round(t @ rot.T * scale + 3 * scale)
        d = _details(pts, 150, padding)
        r = d.rect
        w, h = r.right() - r.left(), r.bottom() - r.top()
        c = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
        ca, sa = np.cos(d.angle), np.sin(d.angle)
        back = (pts - c) @ np.array([[ca, -sa], [sa, ca]]) / [w, h] + 0.5
        seen.append(back)
        t = back
    return np.mean(seen[5:], axis=0) * (1 + 2 * padding) - padding


def test_template_is_what_dlib_measures() -> None:
    np.testing.assert_allclose(measure_template(), TEMPLATE_5, atol=5e-6)


@pytest.mark.parametrize("padding", [0.0, 0.25, 0.5])
def test_transform_reproduces_dlib_rect_and_angle(padding: float) -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.uniform(-1, 1)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        shape = TEMPLATE_5 + rng.normal(0, 0.01, TEMPLATE_5.shape)
        pts = np.round(shape @ rot.T * rng.uniform(1e4, 1e5) + 2e5)
        d = _details(pts, 150, padding)
        m = chip_transform(pts, size=150, padding=padding) * [[149, 149, 1], [149, 149, 1]]
        width = float(np.hypot(m[0, 0], m[1, 0]))
        r = d.rect
        assert width / (r.right() - r.left()) == pytest.approx(1, abs=1e-4)
        assert np.arctan2(m[1, 0], m[0, 0]) == pytest.approx(d.angle, abs=1e-4)
        centre = m[:, :2] @ [0.5, 0.5] + m[:, 2]
        np.testing.assert_allclose(
            centre / width,
            [(r.left() + r.right()) / 2 / width, (r.top() + r.bottom()) / 2 / width],
            atol=1e-4,
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("align")
    s = ModelStore(root / "store")
    s.pull([dr.CARRIER])
    return s, root, check_photos(root / "store")


@pytest.mark.xfail(strict=True, reason="dlib's ~2x-downscale resampling not reproduced yet")
def test_matches_dlib_chips(store) -> None:
    import cv2

    s, root, photos = store
    enc = Encoder(dr.export(s, root / "out", photos=photos).path)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(s.file(dr.CARRIER, dr.LANDMARKS)))
    for path in photos:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        for box in detector(rgb, 1):
            shape = predictor(rgb, box)
            pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            ref = np.ascontiguousarray(
                np.asarray(dlib.get_face_chip(rgb, shape, size=150, padding=0.25))[:, :, ::-1]
            )
            ours = align_face(bgr, pts)
            diff = np.abs(ours.astype(int) - ref.astype(int))
            assert (diff <= 1).mean() >= 0.99
            e = enc.embed([ours, ref])
            e = e / np.linalg.norm(e, axis=1, keepdims=True)
            assert float(e[0] @ e[1]) >= 0.9999


def test_bad_inputs() -> None:
    img = np.zeros((50, 50, 3), np.uint8)
    pts = np.array([[30, 20], [25, 20], [10, 20], [15, 20], [20, 35]], np.float64)
    assert align_face(img, pts).shape == (150, 150, 3)
    with pytest.raises(InvalidInputError):
        align_face(img, pts[:4])
    with pytest.raises(InvalidInputError):
        align_face(img, np.where(np.eye(5, 2, dtype=bool), np.nan, pts))
    with pytest.raises(InvalidInputError):
        align_face(img.astype(np.float32), pts)
    with pytest.raises(InvalidInputError):
        align_face(img[:, :, 0], pts)
    with pytest.raises(InvalidInputError):
        align_face(img, np.zeros((5, 2)))
    with pytest.raises(InvalidInputError):
        align_face(img, pts, size=1)
