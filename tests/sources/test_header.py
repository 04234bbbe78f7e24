"""Image headers: the declared size, read before anything is decoded (decompression bombs)."""

from __future__ import annotations

import os
import struct
import zlib
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.errors import InvalidInputError
from rap_edge.sources import compressed_msg_to_bgr, read_image_file
from rap_edge.sources._files import read_user_file
from rap_edge.sources._header import (
    MAX_DECLARED_PIXELS,
    check_image_header,
    decode_image,
    read_image_header,
)

if TYPE_CHECKING:
    from pathlib import Path


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_bomb(width: int = 30000, height: int = 30000, rows: int = 4) -> bytes:
    """A PNG declaring ``width`` x ``height`` RGB pixels that holds only its first ``rows``
    rows: the decoder allocates the full image from the header before reading any data."""
    raw = (b"\x00" + b"\x80" * (3 * width)) * rows
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything reaches OpenCV's decoder."""

    def refuse(*args: object, **kwargs: object) -> None:
        msg = "cv2.imdecode was called"
        raise AssertionError(msg)

    monkeypatch.setattr(cv2, "imdecode", refuse)


IMG = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("ext", "fmt", "image", "params"),
    [
        (".png", "png", IMG, []),
        (".png", "png", IMG.astype(np.uint16) * 257, []),
        (".jpg", "jpeg", IMG, []),
        (".jpg", "jpeg", IMG, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".bmp", "bmp", IMG, []),
        (".tif", "tiff", IMG, []),
        (".tif", "tiff", IMG.astype(np.uint16), []),
        (".webp", "webp", IMG, [cv2.IMWRITE_WEBP_QUALITY, 80]),
        (".webp", "webp", IMG, [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless
        (".ppm", "pnm", IMG, []),
        (".pgm", "pnm", IMG[:, :, 0], []),
        (".pbm", "pnm", IMG[:, :, 0], []),
        (".pam", "pnm", IMG, []),
    ],
)
def test_the_header_gives_the_size_opencv_decodes(
    ext: str, fmt: str, image: np.ndarray, params: list[int]
) -> None:
    ok, buf = cv2.imencode(ext, image, params)
    assert ok
    header = read_image_header(buf.tobytes())
    assert (header.format, header.width, header.height) == (fmt, 53, 37)
    assert read_image_header(buf) == header  # an array works as well as bytes
    assert decode_image(buf).shape[:2] == (37, 53)


def test_the_real_photos_headers(face_models_photos: list[Path]) -> None:
    for photo in face_models_photos:
        data = photo.read_bytes()
        header = read_image_header(data)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert (header.height, header.width) == decoded.shape[:2], photo.name


@pytest.fixture
def face_models_photos() -> list[Path]:
    from pathlib import Path

    folder = Path.home() / ".cache" / "rap-edge" / "models" / "check-photos"
    photos = sorted(folder.glob("*.jpg"))
    if not photos:
        pytest.skip("no check photos (run `make models`)")
    return photos


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a PNG, JPEG"),
        (b"GIF89a\x01\x00\x01\x00", "not a PNG, JPEG"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "not a PNG, JPEG"),  # JPEG 2000: size not checked
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHD", "truncated PNG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIDAT" + bytes(8), "IHDR"),
        (b"\xff\xd8\xff\xda\x00\x08" + bytes(6), "no frame header"),
        (b"\xff\xd8\xff\xe0\x00", "truncated JPEG"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03", "empty image"),  # DNL height
        (b"BM" + bytes(12) + struct.pack("<Iii", 40, -5, 5), "negative width"),
        (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0), "no ImageWidth"),
        (b"MM\x00*" + struct.pack(">I", 1 << 20), "truncated TIFF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8Z" + bytes(20), "unknown first chunk"),
        (b"P6\n# only a comment", "PNM header"),
        (b"P7\nWIDTH 4\n", "no ENDHDR"),
    ],
)
def test_bad_headers_are_refused_with_the_reason(data: bytes, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        read_image_header(data)


def test_a_bomb_is_refused_from_its_header_before_decoding(no_decoding: None) -> None:
    bomb = png_bomb()
    assert len(bomb) < 1_000_000
    assert read_image_header(bomb).pixels == 900_000_000
    with pytest.raises(InvalidInputError, match=r"declares 30000x30000 pixels \(900 megapixels"):
        check_image_header(bomb)
    with pytest.raises(InvalidInputError, match="not decoded"):
        decode_image(bomb)
    check_image_header(png_bomb(10_000, 10_000))  # exactly the limit passes
    assert MAX_DECLARED_PIXELS == 100_000_000
    with pytest.raises(InvalidInputError, match="over the limit"):
        check_image_header(png_bomb(10_000, 10_001))


def test_an_image_file_bomb_is_skipped_before_decoding(tmp_path: Path, no_decoding: None) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb())
    with pytest.raises(InvalidInputError, match="declares 30000x30000"):
        read_image_file(path)


def test_a_compressed_message_bomb_is_refused_before_decoding(no_decoding: None) -> None:
    class Msg:
        format = "png"
        data = np.frombuffer(png_bomb(), np.uint8)

    with pytest.raises(InvalidInputError, match="declares 30000x30000"):
        compressed_msg_to_bgr(Msg())


def test_the_memory_refuses_a_bomb_before_decoding(no_decoding: None) -> None:
    from rap_edge.memory._validate import check_image_bytes

    with pytest.raises(InvalidInputError, match="bomb.png: declares 30000x30000 pixels, over"):
        check_image_bytes(png_bomb(), source="bomb.png")


@pytest.mark.parametrize(("width", "height"), [(1, 1), (1, 500), (500, 1), (15, 64)])
def test_the_memory_refuses_an_image_too_small_to_hold_a_face(width: int, height: int) -> None:
    from rap_edge.memory._validate import MIN_IMAGE_SIDE, check_image_bytes

    ok, buf = cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))
    assert ok
    with pytest.raises(
        InvalidInputError,
        match=rf"one\.png: declares {width}x{height} pixels, too small to hold a face or an "
        rf"object \(a reference image needs at least {MIN_IMAGE_SIDE} pixels on each side\)",
    ):
        check_image_bytes(buf.tobytes(), source="one.png")
    ok, buf = cv2.imencode(".png", np.full((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE, 3), 9, np.uint8))
    assert check_image_bytes(buf.tobytes(), source="ok.png").width == MIN_IMAGE_SIDE


def test_a_fifo_or_a_device_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match=r"pipe\.png: is a FIFO \(named pipe\), not a"):
        read_user_file(fifo, max_bytes=10)
    with pytest.raises(InvalidInputError, match="is a FIFO"):
        read_image_file(fifo)
    with pytest.raises(InvalidInputError, match="/dev/zero: is a character device"):
        read_user_file("/dev/zero", max_bytes=10)
    with pytest.raises(InvalidInputError, match="is a directory"):
        read_user_file(tmp_path, max_bytes=10)
    with pytest.raises(InvalidInputError, match="no such file"):
        read_user_file(tmp_path / "nope", max_bytes=10)
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 11)
    with pytest.raises(InvalidInputError, match="11 bytes is over the 10 byte limit"):
        read_user_file(big, max_bytes=10)
    assert read_user_file(big, max_bytes=11) == b"x" * 11
