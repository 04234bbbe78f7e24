"""rap_edge_ros.convert: sensor_msgs image fields <-> BGR uint8, in the main venv (no ROS).

The conftest puts ros2_ws/src/rap_edge_ros on sys.path.
"""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from rap_edge_ros.convert import bgr_to_image_fields, compressed_to_bgr, image_to_bgr

from rap_edge.errors import InvalidInputError
from rap_edge.sources import ENCODINGS

RNG = np.random.default_rng(11)
H, W = 4, 6
BGR = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)


def decode(
    encoding: str, pixels: np.ndarray, *, pad: int = 0, big: bool = False, width: int = W
) -> np.ndarray:
    """Pack ``pixels`` [H, row bytes] (uint8) or [H, W(, C)] (uint16) as a message would."""
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if big else "<u2")
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return image_to_bgr(encoding, rows.shape[0], width, padded.shape[1], big, padded.tobytes())


def check(out: np.ndarray, expected: np.ndarray) -> None:
    assert out.dtype == np.uint8
    assert out.shape == (*expected.shape[:2], 3)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("pad", [0, 5])
def test_bgr8_round_trip(pad: int) -> None:
    fields = bgr_to_image_fields(BGR)
    assert fields["encoding"] == "bgr8"
    assert (fields["height"], fields["width"], fields["step"]) == (H, W, W * 3)
    assert fields["is_bigendian"] == 0
    assert isinstance(fields["data"], bytes)
    assert len(fields["data"]) == H * W * 3
    check(image_to_bgr(**fields), BGR)
    check(decode("bgr8", BGR, pad=pad), BGR)
    check(decode("8UC3", BGR, pad=pad), BGR)


def test_bgr_to_image_fields_copies_non_contiguous_input() -> None:
    big = np.zeros((2 * H, 2 * W, 3), np.uint8)
    big[::2, ::2] = BGR
    check(image_to_bgr(**bgr_to_image_fields(big[::2, ::2])), BGR)


def test_known_pixel_values() -> None:
    # One pixel: red 10, green 20, blue 30 (alpha 99) in each channel order.
    expected = np.array([[[30, 20, 10]]], np.uint8)
    one = {
        "rgb8": [10, 20, 30],
        "bgr8": [30, 20, 10],
        "rgba8": [10, 20, 30, 99],
        "bgra8": [30, 20, 10, 99],
    }
    for encoding, values in one.items():
        data = bytes(values)
        check(image_to_bgr(encoding, 1, 1, len(data), False, data), expected)
    check(image_to_bgr("mono8", 1, 1, 1, False, bytes([77])), np.full((1, 1, 3), 77, np.uint8))


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    ("encoding", "order"), [("rgb8", [2, 1, 0]), ("rgba8", [2, 1, 0, 3]), ("bgra8", [0, 1, 2, 3])]
)
def test_colour_orders_with_padding(encoding: str, order: list[int], pad: int) -> None:
    alpha = RNG.integers(0, 256, (H, W, 1), dtype=np.uint8)
    packed = np.concatenate([BGR, alpha], axis=2)[:, :, order]
    check(decode(encoding, np.ascontiguousarray(packed), pad=pad), BGR)


@pytest.mark.parametrize("pad", [0, 1])
def test_mono8(pad: int) -> None:
    grey = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    check(decode("mono8", grey, pad=pad), np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("pad", [0, 2])
def test_16_bit_is_scaled_by_256_in_either_byte_order(encoding: str, big: bool, pad: int) -> None:
    depth = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    depth[0, :3] = [0x1234, 1000, 0xFFFF]  # 1000 mm of depth -> 3: the fixed scale is dark
    out = decode(encoding, depth, pad=pad, big=big)
    check(out, np.repeat((depth >> 8).astype(np.uint8)[:, :, None], 3, axis=2))
    assert list(out[0, :3, 0]) == [0x12, 3, 0xFF]


def test_byte_order_flag_is_honoured() -> None:
    data = bytes([0x12, 0x34])  # big-endian 0x1234, little-endian 0x3412
    assert image_to_bgr("mono16", 1, 1, 2, True, data)[0, 0, 0] == 0x12
    assert image_to_bgr("mono16", 1, 1, 2, False, data)[0, 0, 0] == 0x34


# Two pixels, black then white, with neutral chroma (BT.601 video range: Y 16..235).
UYVY_BLACK_WHITE = bytes([128, 16, 128, 235])  # U Y0 V Y1
YUYV_BLACK_WHITE = bytes([16, 128, 235, 128])  # Y0 U Y1 V
BLACK_WHITE = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)


@pytest.mark.parametrize("encoding", ["uyvy", "yuv422", "UYVY"])
def test_uyvy_names(encoding: str) -> None:
    # ROS: UYVY = "uyvy", and the deprecated YUV422 = "yuv422" is UYVY too.
    check(image_to_bgr(encoding, 1, 2, 4, False, UYVY_BLACK_WHITE), BLACK_WHITE)


@pytest.mark.parametrize("encoding", ["yuyv", "yuv422_yuy2"])
def test_yuyv_names(encoding: str) -> None:
    # ROS: YUYV = "yuyv", and the deprecated YUV422_YUY2 = "yuv422_yuy2" is YUYV too.
    check(image_to_bgr(encoding, 1, 2, 4, False, YUYV_BLACK_WHITE), BLACK_WHITE)


def test_yuv_orders_are_not_interchangeable() -> None:
    assert not np.array_equal(image_to_bgr("yuyv", 1, 2, 4, False, UYVY_BLACK_WHITE), BLACK_WHITE)
    assert not np.array_equal(
        image_to_bgr("yuv422", 1, 2, 4, False, YUYV_BLACK_WHITE), BLACK_WHITE
    )


def test_yuv_chroma_and_padding() -> None:
    # Red (Y 81, U 90, V 240) on two rows, with 3 bytes of padding per row.
    row = bytes([90, 81, 240, 81]) + b"\xab\xab\xab"
    out = image_to_bgr("uyvy", 2, 2, 7, False, row * 2)
    assert out.shape == (2, 2, 3)
    assert (out[:, :, 2] > 240).all()
    assert (out[:, :, :2] < 15).all()
    # The same pixels as YUYV: Y0 U Y1 V.
    np.testing.assert_array_equal(
        image_to_bgr("yuyv", 1, 2, 4, False, bytes([81, 90, 81, 240])), out[:1]
    )


@pytest.mark.parametrize("name", sorted(n for n, e in ENCODINGS.items() if e.bits))
def test_every_ros_encoding_decodes_to_bgr(name: str) -> None:
    enc = ENCODINGS[name]
    step = W * enc.channels * enc.bits // 8 + 4
    data = RNG.integers(0, 256, H * step, dtype=np.uint8).tobytes()
    out = image_to_bgr(enc.name, H, W, step, False, data)
    assert out.shape == (H, W, 3)
    assert out.dtype == np.uint8


@pytest.mark.parametrize(
    "wrap",
    [
        bytes,
        bytearray,
        memoryview,
        lambda b: array.array("B", b),
        lambda b: np.frombuffer(b, np.uint8),
    ],
)
def test_data_types_rclpy_and_others_give(wrap: object) -> None:
    fields = bgr_to_image_fields(BGR)
    fields["data"] = wrap(fields["data"])  # type: ignore[operator,typeddict-item]
    check(image_to_bgr(**fields), BGR)


def test_compressed_png_and_jpeg() -> None:
    ok, png = cv2.imencode(".png", BGR)
    assert ok
    check(compressed_to_bgr("png", png.tobytes()), BGR)
    smooth = np.full((16, 16, 3), (40, 120, 200), np.uint8)
    ok, jpg = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    out = compressed_to_bgr("bgr8; jpeg compressed bgr8", array.array("B", jpg.tobytes()))
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - smooth).max() <= 3
    ok, grey = cv2.imencode(".png", np.full((3, 5), 9, np.uint8))
    assert ok
    check(
        compressed_to_bgr("mono8; png compressed mono8", grey.tobytes()),
        np.full((3, 5, 3), 9, np.uint8),
    )


def fail(match: str, *args: object) -> None:
    with pytest.raises(ValueError, match=match) as info:
        image_to_bgr(*args)  # type: ignore[arg-type]
    assert isinstance(info.value, InvalidInputError)


def test_errors_name_the_problem() -> None:
    row = W * 3
    good = bytes(H * row)
    fail(r"unsupported image encoding 'nv21'", "nv21", H, W, row, False, good)
    fail(r"unsupported image encoding 'jpeg'", "jpeg", H, W, row, False, good)
    # truncated and over-long data: the byte counts and height * step are named
    fail(
        rf"data has {H * row - 1} bytes; height \* step is {H} \* {row} = {H * row}",
        "bgr8",
        H,
        W,
        row,
        False,
        good[:-1],
    )
    fail(rf"data has 0 bytes.*{H * row}", "bgr8", H, W, row, False, b"")
    fail(rf"data has {H * row + 3} bytes", "bgr8", H, W, row, False, good + b"abc")
    # step shorter than a row of this encoding
    fail(
        rf"step {row - 1} is shorter than a row of {W} bgr8 pixels \({row} bytes\)",
        "bgr8",
        H,
        W,
        row - 1,
        False,
        bytes(H * (row - 1)),
    )
    fail(
        r"step 11 is shorter than a row of 6 mono16 pixels \(12 bytes\)",
        "mono16",
        H,
        W,
        11,
        False,
        bytes(H * 11),
    )
    fail(r"step -1 is shorter", "mono8", H, W, -1, False, good)
    # zero, negative and absurd sizes
    fail(r"'bgr8' image of 0x4: zero or negative size", "bgr8", H, 0, row, False, good)
    fail(r"'bgr8' image of 6x0: zero or negative size", "bgr8", 0, W, row, False, b"")
    fail(r"zero or negative size", "mono8", -2, W, W, False, good)
    fail(
        r"'mono8' image of 100000x100000: 10000 megapixels is over the limit of 100",
        "mono8",
        100_000,
        100_000,
        100_000,
        False,
        good,
    )
    # packed YUV needs pairs of pixels
    fail(r"\(yuv422\): packed YUV 4:2:2 needs an even width", "yuv422", 1, 3, 6, False, bytes(6))
    # not bytes at all
    fail(r"data must be bytes-like.*list", "mono8", 1, 2, 2, False, [1, 2])


def test_compressed_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"empty compressed image \(format 'jpeg'\)"):
        compressed_to_bgr("jpeg", b"")
    with pytest.raises(
        ValueError,
        match=r"cannot decode 9 bytes of compressed image "
        r"\(format 'png'\)",
    ):
        compressed_to_bgr("png", b"not a png")
    with pytest.raises(ValueError, match=r"32FC1.*not supported"):
        compressed_to_bgr("32FC1; compressedDepth", b"x" * 20)


@pytest.mark.parametrize(
    "bad",
    [
        BGR.astype(np.uint16),
        BGR[:, :, 0],
        BGR[:, :, :2],
        np.zeros((0, 3, 3), np.uint8),
        np.dstack([BGR, BGR[:, :, :1]]),
    ],
)
def test_bgr_to_image_fields_refuses_non_bgr(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"expected a BGR uint8 image \[H, W, 3\], got "):
        bgr_to_image_fields(bad)


def test_a_compressed_bomb_is_refused_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CompressedImage declaring 30000x30000 pixels is refused before anything decodes it."""
    from tests.sources.test_header import png_bomb

    def refuse(*args: object, **kwargs: object) -> None:
        msg = "cv2.imdecode was called"
        raise AssertionError(msg)

    monkeypatch.setattr(cv2, "imdecode", refuse)
    bomb = png_bomb()
    for data in (bomb, array.array("B", bomb)):
        with pytest.raises(InvalidInputError, match=r"PNG declares 30000x30000 pixels"):
            compressed_to_bgr("png", data)
    # and a compressedDepth PNG behind its 12-byte header
    with pytest.raises(InvalidInputError, match="not decoded"):
        compressed_to_bgr("16UC1; compressedDepth png", bytes(12) + bomb)
    with pytest.raises(InvalidInputError, match="not a PNG, JPEG"):
        compressed_to_bgr("gif", b"GIF89a" + bytes(20))
