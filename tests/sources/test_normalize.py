"""normalize_frame: every accepted layout becomes contiguous BGR uint8; the rest is refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rap_edge.errors import InvalidInputError
from rap_edge.sources import ENCODINGS, MAX_FRAME_PIXELS, check_bgr_image, normalize_frame

RNG = np.random.default_rng(7)
BGR = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)


def check(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.dtype == np.uint8
    assert out.shape == (*shape, 3)
    assert out.flags.c_contiguous


def test_bgr_default_is_kept() -> None:
    out = normalize_frame(BGR)
    check(out, (5, 6))
    np.testing.assert_array_equal(out, BGR)
    np.testing.assert_array_equal(normalize_frame(BGR, "bgr8"), BGR)
    np.testing.assert_array_equal(normalize_frame(BGR, "8UC3"), BGR)


@pytest.mark.parametrize("encoding", ["rgb8", "RGB8", "rgb"])
def test_rgb_is_swapped(encoding: str) -> None:
    out = normalize_frame(BGR[:, :, ::-1], encoding)
    check(out, (5, 6))
    np.testing.assert_array_equal(out, BGR)


def test_non_contiguous_input() -> None:
    view = np.zeros((10, 12, 3), np.uint8)[::2, ::2]
    view[:] = BGR
    out = normalize_frame(view)
    check(out, (5, 6))
    np.testing.assert_array_equal(out, BGR)


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 1)])
@pytest.mark.parametrize("encoding", [None, "mono8", "8UC1", "gray"])
def test_grey(shape: tuple[int, ...], encoding: str | None) -> None:
    grey = RNG.integers(0, 256, shape, dtype=np.uint8)
    out = normalize_frame(grey, encoding)
    check(out, (5, 6))
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey.reshape(5, 6))


def test_bgra_and_rgba_drop_alpha() -> None:
    alpha = RNG.integers(0, 256, (5, 6, 1), dtype=np.uint8)
    bgra = np.concatenate([BGR, alpha], axis=2)
    rgba = np.concatenate([BGR[:, :, ::-1], alpha], axis=2)
    for arr, enc in [(bgra, None), (bgra, "bgra8"), (rgba, "rgba8"), (rgba, "RGBA")]:
        out = normalize_frame(arr, enc)
        check(out, (5, 6))
        np.testing.assert_array_equal(out, BGR)


def test_uint16_shifts_by_eight_bits() -> None:
    wide = BGR.astype(np.uint16) * 256 + 255  # low byte is dropped
    np.testing.assert_array_equal(normalize_frame(wide), BGR)
    np.testing.assert_array_equal(normalize_frame(wide[:, :, ::-1], "rgb16"), BGR)
    grey = np.array([[0, 255, 256, 65535]], np.uint16)
    out = normalize_frame(grey, "mono16")
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 255])
    np.testing.assert_array_equal(normalize_frame(grey, "16UC1"), out)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_zero_to_one(dtype: type) -> None:
    arr = np.array([[[0.0, 0.5, 1.0], [-0.5, 2.0, 0.25]]], dtype=dtype)
    out = normalize_frame(arr)
    np.testing.assert_array_equal(out[0], [[0, 128, 255], [0, 255, 64]])


def test_bayer_patterns() -> None:
    b, g, r = 200, 100, 30
    value = {"R": r, "G": g, "B": b}
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        mosaic = np.zeros((8, 8), np.uint8)
        for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            mosaic[dy::2, dx::2] = value[pattern[k].upper()]
        out = normalize_frame(mosaic, f"bayer_{pattern}8")
        check(out, (8, 8))
        np.testing.assert_array_equal(out[4, 4], [b, g, r], err_msg=pattern)
        out16 = normalize_frame(mosaic.astype(np.uint16) << 8, f"bayer_{pattern}16")
        np.testing.assert_array_equal(out16[4, 4], [b, g, r], err_msg=pattern)


@pytest.mark.parametrize(
    ("encoding", "code"),
    [("yuv422", cv2.COLOR_BGR2YUV_UYVY), ("yuv422_yuy2", cv2.COLOR_BGR2YUV_YUY2)],
)
def test_yuv422(encoding: str, code: int) -> None:
    flat = np.full((4, 6, 3), (40, 120, 200), np.uint8)
    packed = cv2.cvtColor(flat, code)
    assert packed.shape == (4, 6, 2)
    out = normalize_frame(packed, encoding)
    check(out, (4, 6))
    assert np.abs(out.astype(int) - flat).max() <= 3
    with pytest.raises(InvalidInputError, match="even width"):
        normalize_frame(packed[:, :5], encoding)


def test_large_frames_are_kept_at_full_resolution() -> None:
    big = np.zeros((4000, 6000), np.uint8)  # 24 MP, grey so the test stays light
    out = normalize_frame(big)
    assert out.shape == (4000, 6000, 3)


def test_absurd_size_refused_without_allocating() -> None:
    side = int(MAX_FRAME_PIXELS**0.5) + 1
    huge = np.broadcast_to(np.uint8(0), (side, side, 3))  # no memory behind it
    with pytest.raises(InvalidInputError, match="megapixels"):
        normalize_frame(huge)


@pytest.mark.parametrize(
    ("arr", "encoding", "match"),
    [
        (np.zeros((0, 4, 3), np.uint8), None, r"shape \(0, 4, 3\)"),
        (np.zeros((4,), np.uint8), None, r"shape \(4,\)"),
        (np.zeros((2, 2, 2, 3), np.uint8), None, "shape"),
        (np.zeros((4, 4, 5), np.uint8), None, "5 channels"),
        (np.zeros((4, 4, 2), np.uint8), None, "2 channels"),
        (np.zeros((4, 4), bool), None, "boolean"),
        (np.zeros((4, 4, 3), np.int32), None, "int32"),
        (np.zeros((4, 4, 3), np.int8), None, "int8"),
        (np.zeros((4, 4, 3), np.complex64), None, "complex64"),
        (np.full((4, 4), np.nan, np.float32), None, "NaN"),
        (np.full((4, 4), np.inf, np.float64), None, "infinite"),
        (np.zeros((4, 4, 3), np.uint8), "foo8", "unsupported image encoding 'foo8'"),
        (np.zeros((4, 4, 3), np.uint8), "32FC1", "32FC1"),
        (np.zeros((4, 4, 3), np.uint8), "mono8", r"1 channel\(s\).*\(4, 4, 3\)"),
        (np.zeros((4, 4), np.uint8), "rgb8", "3 channel"),
        (np.zeros((4, 4, 3), np.uint16), "rgb8", "uint8.*uint16"),
        (np.zeros((4, 4), np.uint8), "mono16", "uint16.*uint8"),
    ],
)
def test_refusals(arr: np.ndarray, encoding: str | None, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        normalize_frame(arr, encoding)


def test_every_encoding_in_the_table_converts() -> None:
    for name, enc in ENCODINGS.items():
        dtype = np.uint16 if enc.bits == 16 else np.uint8
        shape = (4, 6) if enc.channels == 1 else (4, 6, enc.channels)
        out = normalize_frame(np.zeros(shape, dtype), name)
        check(out, (4, 6))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
        shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3, 4])),
        elements={"allow_nan": False, "allow_infinity": False, "min_value": 0, "max_value": 1},
    ).map(lambda a: a if a.dtype.kind == "f" else a * np.iinfo(a.dtype).max),
    st.booleans(),
)
def test_property_any_accepted_array_gives_bgr(arr: np.ndarray, squeeze: bool) -> None:
    if squeeze and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    out = normalize_frame(arr)
    check(out, arr.shape[:2])
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] >= 3:
        np.testing.assert_array_equal(out, arr[:, :, :3])


def test_check_bgr_image_accepts_the_pipeline_format_as_is() -> None:
    img = np.zeros((4, 6, 3), np.uint8)[:, ::2]  # a non-contiguous view is fine
    assert check_bgr_image(img) is img


@pytest.mark.parametrize(
    ("bad", "got"),
    [
        (np.zeros((4, 4), np.uint8), r"uint8 \(4, 4\)"),
        (np.zeros((4, 4, 4), np.uint8), r"uint8 \(4, 4, 4\)"),
        (np.zeros((4, 4, 3), np.float32), r"float32 \(4, 4, 3\)"),
        (np.zeros((0, 4, 3), np.uint8), r"uint8 \(0, 4, 3\)"),
        ([[1, 2, 3]], "list"),
        (None, "NoneType"),
    ],
)
def test_check_bgr_image_names_what_is_wrong(bad: object, got: str) -> None:
    with pytest.raises(
        InvalidInputError,
        match=rf"^image #2 must be a BGR uint8 image \[H, W, 3\], got {got} "
        r"\(rap_edge.sources.normalize_frame converts other formats\)$",
    ):
        check_bgr_image(bad, "image #2")
    with pytest.raises(InvalidInputError, match="^frame must be"):
        check_bgr_image(bad)
