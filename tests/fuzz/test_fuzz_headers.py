"""Image headers: the declared size must be the size OpenCV decodes, for every format, however
the bytes are cut or changed; anything else is an InvalidInputError, never another exception."""

from __future__ import annotations

import contextlib
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rap_edge.errors import InvalidInputError
from rap_edge.sources._header import (
    MAX_DECLARED_PIXELS,
    MAX_DECODED_SIDE,
    DeclaredSizeError,
    ImageHeader,
    check_image_header,
    decode_image,
    read_image_header,
)
from tests.fuzz.conftest import FUZZ

FORMATS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".webp": "webp",
    ".ppm": "pnm",
    ".pgm": "pnm",
    ".pam": "pnm",
}


@st.composite
def encoded(draw: st.DrawFn) -> tuple[bytes, str, int, int]:
    """A real encoded image of a drawn size, format and depth."""
    ext = draw(st.sampled_from(sorted(FORMATS)))
    h = draw(st.integers(1, 70))
    w = draw(st.integers(1, 70))
    grey = ext == ".pgm" or (draw(st.booleans()) and ext != ".ppm")
    deep = ext in {".png", ".tif", ".pgm", ".ppm"} and draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (h, w) if grey else (h, w, 3)
    img: np.ndarray = rng.integers(0, 65536 if deep else 256, shape).astype(
        np.uint16 if deep else np.uint8
    )
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes(), FORMATS[ext], w, h


@FUZZ
@given(encoded())
def test_the_header_of_every_encoded_image_is_its_decoded_size(
    sample: tuple[bytes, str, int, int],
) -> None:
    data, fmt, w, h = sample
    assert read_image_header(data) == ImageHeader(fmt, w, h)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None
    assert decoded.shape[:2] == (h, w)


def _mutate(data: bytes, cuts: list[tuple[int, int]], end: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in cuts:
        out[pos % len(out)] = value
    return bytes(out[:end])


@FUZZ
@given(
    encoded(),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 400)),
)
def test_a_damaged_image_is_refused_or_decodes_to_its_declared_size(
    sample: tuple[bytes, str, int, int], cuts: list[tuple[int, int]], end: int | None
) -> None:
    """The property the bomb check rests on: OpenCV never decodes more than the header says."""
    _refused_or_within_its_header(_mutate(sample[0], cuts, end))


def _refused_or_within_its_header(data: bytes) -> None:
    try:
        header = read_image_header(data)
    except InvalidInputError:
        return
    assert header.width > 0 and header.height > 0
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        # OpenCV's own refusal (a side over CV_IO_MAX_IMAGE_WIDTH/HEIGHT): nothing decoded;
        # check_image_header refuses those sides first, and decode_image says so.
        assert max(header.width, header.height) > MAX_DECODED_SIDE, header
        with pytest.raises(DeclaredSizeError, match="a side over the 1,048,576 pixels"):
            check_image_header(data)
        return
    if decoded is not None:
        assert decoded.shape[0] * decoded.shape[1] <= header.pixels, (header, decoded.shape)


def test_a_bmp_whose_damaged_width_is_over_opencvs_limit_is_refused() -> None:
    """The case the fuzzer found: one changed byte makes a 1x27 BMP declare 1048577x27."""
    ok, buf = cv2.imencode(".bmp", np.zeros((27, 1, 3), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    data[20] = 16  # the width's third byte: 1 -> 1,048,577
    assert read_image_header(bytes(data)).width == (1 << 20) + 1
    _refused_or_within_its_header(bytes(data))
    with pytest.raises(InvalidInputError, match="declares 1048577x27 pixels, a side over"):
        decode_image(bytes(data))


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_a_header_or_an_input_error(data: bytes) -> None:
    try:
        header = read_image_header(data)
    except InvalidInputError:
        return
    assert header.width > 0 and header.height > 0


@FUZZ
@given(
    st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"BM", b"II*\x00", b"MM\x00*", b"P6\n"]),
    st.binary(max_size=64),
)
def test_known_magic_then_anything_is_a_header_or_an_input_error(
    magic: bytes, rest: bytes
) -> None:
    with contextlib.suppress(InvalidInputError):
        read_image_header(magic + rest)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc


def _bmp_header(width: int, height: int) -> bytes:
    return b"BM" + bytes(12) + struct.pack("<Iii", 40, width, height) + bytes(28)


def _jpeg_header(width: int, height: int) -> bytes:
    sof = struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0" + sof


def _tiff_header(width: int, height: int) -> bytes:
    entries = struct.pack("<HHII", 256, 4, 1, width) + struct.pack("<HHII", 257, 4, 1, height)
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + bytes(4)


def _webp_header(width: int, height: int) -> bytes:
    vp8x = bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + bytes(4) + b"WEBPVP8X" + struct.pack("<I", 10) + vp8x


@FUZZ
@given(
    st.sampled_from(
        [
            (_png_header, 2**31 - 1),
            (_bmp_header, 2**31 - 1),
            (_jpeg_header, 65535),
            (_tiff_header, 2**32 - 1),
            (_webp_header, 2**24),
        ]
    ),
    st.data(),
)
def test_declared_sizes_are_read_exactly_and_limited(
    make: tuple[object, int], data: st.DataObject
) -> None:
    build, top = make
    width = data.draw(st.integers(1, top))
    height = data.draw(st.integers(1, top))
    raw = build(width, height)  # type: ignore[operator]
    header = read_image_header(raw)
    assert (header.width, header.height) == (width, height)
    if width * height > MAX_DECLARED_PIXELS or max(width, height) > MAX_DECODED_SIDE:
        with pytest.raises(InvalidInputError, match="not decoded"):
            check_image_header(raw)
    else:
        assert check_image_header(raw) == header
