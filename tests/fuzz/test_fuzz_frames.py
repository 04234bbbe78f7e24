"""Frames from outside: the source normaliser and the ROS image conversion give a C-contiguous
BGR uint8 [H, W, 3] of the frame's size, or an InvalidInputError; never another exception."""

from __future__ import annotations

import array

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rap_edge_ros.convert import compressed_to_bgr, image_to_bgr

from rap_edge.errors import InvalidInputError
from rap_edge.sources import ENCODINGS, normalize_frame
from tests.fuzz.conftest import FUZZ

DTYPES = [
    np.uint8,
    np.uint16,
    np.int8,
    np.int16,
    np.int32,
    np.uint32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
    np.bool_,
    np.complex64,
]
ENCODING_NAMES = sorted({e.name for e in ENCODINGS.values()})
ODD_ENCODINGS = ["", " ", "RGB8", "nv21", "32FC1", "jpeg", "bgr8\x00", "ыыы", "16UC1 "]


def _check_bgr(out: np.ndarray, height: int, width: int) -> None:
    assert out.dtype == np.uint8
    assert out.shape == (height, width, 3)
    assert out.flags["C_CONTIGUOUS"]


@FUZZ
@given(
    hnp.arrays(
        st.sampled_from(DTYPES),
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9),
        elements=None,
    ),
    st.one_of(st.none(), st.sampled_from(ENCODING_NAMES), st.sampled_from(ODD_ENCODINGS)),
)
def test_normalize_frame_gives_bgr_or_an_input_error(
    frame: np.ndarray, encoding: str | None
) -> None:
    try:
        out = normalize_frame(frame, encoding)
    except InvalidInputError:
        return
    _check_bgr(out, frame.shape[0], frame.shape[1])


@FUZZ
@given(
    st.one_of(st.sampled_from(ENCODING_NAMES), st.sampled_from(ODD_ENCODINGS)),
    st.integers(-2, 12),
    st.integers(-2, 12),
    st.integers(-1, 80),
    st.booleans(),
    st.one_of(
        st.binary(max_size=2000),
        st.integers(0, 2000).map(bytes),
    ),
    st.sampled_from([bytes, bytearray, lambda b: array.array("B", b), memoryview]),
)
def test_ros_image_fields_give_bgr_or_an_input_error(  # noqa: PLR0913, PLR0917
    encoding: str,
    height: int,
    width: int,
    step: int,
    big: bool,
    data: bytes,
    wrap: object,
) -> None:
    try:
        out = image_to_bgr(encoding, height, width, step, big, wrap(data))  # type: ignore[operator]
    except InvalidInputError:
        return
    _check_bgr(out, height, width)


@FUZZ
@given(st.sampled_from(ENCODING_NAMES), st.integers(1, 12), st.integers(1, 12), st.data())
def test_well_formed_ros_images_always_convert(
    encoding: str, height: int, width: int, data: st.DataObject
) -> None:
    enc = ENCODINGS[encoding.lower()]
    if enc.bits is None or (enc.order in {"uyvy", "yuyv"} and width % 2):
        return
    pad = data.draw(st.integers(0, 5))
    step = width * enc.channels * enc.bits // 8 + pad
    raw = data.draw(st.binary(min_size=height * step, max_size=height * step))
    _check_bgr(
        image_to_bgr(encoding, height, width, step, data.draw(st.booleans()), raw), height, width
    )


@FUZZ
@given(
    st.sampled_from(["png", "jpeg", "", "16UC1; compressedDepth png", "bgr8; jpeg"]),
    st.binary(max_size=400),
)
def test_compressed_messages_give_bgr_or_an_input_error(fmt: str, data: bytes) -> None:
    try:
        out = compressed_to_bgr(fmt, data)
    except InvalidInputError:
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
