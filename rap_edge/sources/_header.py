"""The declared size of an encoded image, read from its header before anything is decoded.

A small PNG can declare 30000x30000 pixels: decoding it takes gigabytes before any check on the
decoded array could run (a decompression bomb). Every place an encoded image enters (memory
``add``, ``ask``, image files and folders, rosbag2 and ROS ``CompressedImage`` messages, web
uploads) reads the header first with :func:`read_image_header` and refuses a declared size over
the limit, or decodes through :func:`decode_image`, which does both.

Formats, told apart by their first bytes (never by a file name), as OpenCV decodes them:

- PNG: the ``IHDR`` chunk, which must come first;
- JPEG: the first start-of-frame segment (``SOF0``-``SOF15`` but ``DHT``, ``JPG``, ``DAC``),
  reached by walking the segments from ``SOI``; a ``SOS`` or ``EOI`` first is an error, and so
  is a height of 0 (a ``DNL`` height, which no checked size could bound);
- BMP: the ``BITMAPCOREHEADER`` (16-bit sizes) or any later info header (32-bit, a negative
  height meaning top-down rows);
- TIFF and BigTIFF, either byte order: ``ImageWidth`` and ``ImageLength`` of the first image
  file directory (the page OpenCV decodes);
- WebP: the ``VP8X`` canvas, or the ``VP8`` key frame or ``VP8L`` header of a simple file;
- PNM (``P1``-``P6``) and PAM (``P7``): the text header.

Anything else (GIF, JPEG 2000, OpenEXR, Radiance HDR, PFM, Sun raster, AVIF, ...) is refused:
its size is not checked here, so it is never handed to the decoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "HEADER_FORMATS",
    "MAX_DECLARED_PIXELS",
    "MAX_DECODED_SIDE",
    "DeclaredSizeError",
    "HeaderError",
    "ImageHeader",
    "check_image_header",
    "decode_image",
    "read_image_header",
]

MAX_DECLARED_PIXELS = 100_000_000
# OpenCV refuses (with an exception, not None) a width or height above this (CV_IO_MAX_IMAGE_*).
MAX_DECODED_SIDE = 1 << 20
"""The most pixels an encoded image may declare (100 megapixels, the frame and memory limit)."""

HEADER_FORMATS = ("png", "jpeg", "bmp", "tiff", "webp", "pnm")
"""The formats whose header :func:`read_image_header` reads."""

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: C0..CF except C4 (DHT), C8 (JPG) and CC (DAC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length: TEM, RST0..RST7.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_TIFF_WIDTH, _TIFF_LENGTH = 256, 257
_PNM_MAX_HEADER = 4096  # bytes of text a P1..P7 header may take before its sizes


class HeaderError(InvalidInputError):
    """The header is missing, truncated, unknown or declares an impossible size."""


class DeclaredSizeError(HeaderError):
    """The header declares more pixels than allowed; the image was not decoded."""


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What an encoded image's header declares.

    Attributes:
        format: One of :data:`HEADER_FORMATS`.
        width: Declared width in pixels (before any EXIF rotation).
        height: Declared height in pixels.
    """

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """``width * height``."""
        return self.width * self.height


def _need(data: bytes, end: int, fmt: str) -> None:
    if len(data) < end:
        msg = f"truncated {fmt.upper()} header ({len(data)} bytes)"
        raise HeaderError(msg)


def _png(data: bytes) -> tuple[int, int]:
    _need(data, 24, "png")
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:  # noqa: PLR2004 - IHDR's fixed length
        msg = "PNG does not start with its IHDR chunk"
        raise HeaderError(msg)
    width, height = struct.unpack(">II", data[16:24])
    if width > 0x7FFFFFFF or height > 0x7FFFFFFF:  # noqa: PLR2004 - PNG's 31-bit sizes
        msg = f"PNG declares an impossible size {width}x{height}"
        raise HeaderError(msg)
    return width, height


def _jpeg(data: bytes) -> tuple[int, int]:
    pos = 2
    while True:
        _need(data, pos + 2, "jpeg")
        if data[pos] != 0xFF:  # noqa: PLR2004
            msg = f"JPEG has no marker at byte {pos} (corrupt segment structure)"
            raise HeaderError(msg)
        while data[pos] == 0xFF:  # noqa: PLR2004 - fill bytes before a marker
            pos += 1
            _need(data, pos + 1, "jpeg")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in {0xD8, 0xD9, 0xDA}:  # SOI, EOI, SOS before any frame header
            msg = "JPEG has no frame header (SOF) before its image data"
            raise HeaderError(msg)
        _need(data, pos + 2, "jpeg")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:  # noqa: PLR2004 - the length counts its own two bytes
            msg = f"JPEG segment {marker:#04x} has an impossible length {length}"
            raise HeaderError(msg)
        if marker in _SOF:
            _need(data, pos + 7, "jpeg")
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            return width, height
        pos += length


def _bmp(data: bytes) -> tuple[int, int]:
    _need(data, 18, "bmp")
    (size,) = struct.unpack("<I", data[14:18])
    if size == 12:  # noqa: PLR2004 - BITMAPCOREHEADER
        _need(data, 22, "bmp")
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    if size < 16:  # noqa: PLR2004 - the shortest info header with 32-bit sizes (OS/2 2.x)
        msg = f"BMP info header of {size} bytes is not a known kind"
        raise HeaderError(msg)
    _need(data, 26, "bmp")
    width, height = struct.unpack("<ii", data[18:26])
    if width < 0:
        msg = f"BMP declares a negative width {width}"
        raise HeaderError(msg)
    return width, abs(height)


def _tiff(data: bytes) -> tuple[int, int]:
    _need(data, 8, "tiff")
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(order + "H", data[2:4])
    big = version == 43  # noqa: PLR2004 - BigTIFF
    if big:
        _need(data, 16, "tiff")
        offset_size, _, ifd = struct.unpack(order + "HHQ", data[4:16])
        if offset_size != 8:  # noqa: PLR2004
            msg = f"BigTIFF with offsets of {offset_size} bytes"
            raise HeaderError(msg)
        count_fmt, entry_size, count_size = "Q", 20, 8
    else:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        count_fmt, entry_size, count_size = "H", 12, 2
    _need(data, ifd + count_size, "tiff")
    (count,) = struct.unpack(order + count_fmt, data[ifd : ifd + count_size])
    found: dict[int, int] = {}
    for i in range(count):
        start = ifd + count_size + i * entry_size
        _need(data, start + entry_size, "tiff")
        entry = data[start : start + entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag not in {_TIFF_WIDTH, _TIFF_LENGTH}:
            continue
        value = entry[12:] if big else entry[8:]
        # SHORT, LONG or (BigTIFF) LONG8, stored first in the value field.
        formats = {3: "H", 4: "I", 16: "Q"}
        if kind not in formats or (kind == 16 and not big):  # noqa: PLR2004
            msg = f"TIFF tag {tag} has type {kind}, not an integer size"
            raise HeaderError(msg)
        (found[tag],) = struct.unpack_from(order + formats[kind], value)
    if _TIFF_WIDTH not in found or _TIFF_LENGTH not in found:
        msg = "TIFF's first directory has no ImageWidth or ImageLength"
        raise HeaderError(msg)
    return found[_TIFF_WIDTH], found[_TIFF_LENGTH]


def _webp(data: bytes) -> tuple[int, int]:
    _need(data, 30, "webp")
    chunk = data[12:16]
    payload = data[20:]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(payload[4:7], "little")
        height = 1 + int.from_bytes(payload[7:10], "little")
        return width, height
    if chunk == b"VP8L":
        if payload[0] != 0x2F:  # noqa: PLR2004 - the lossless signature byte
            msg = "WebP lossless header has a bad signature"
            raise HeaderError(msg)
        bits = int.from_bytes(payload[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        if payload[3:6] != b"\x9d\x01\x2a":
            msg = "WebP lossy data does not start with a key frame"
            raise HeaderError(msg)
        width, height = struct.unpack("<HH", payload[6:10])
        return width & 0x3FFF, height & 0x3FFF
    msg = f"WebP with an unknown first chunk {chunk!r}"
    raise HeaderError(msg)


def _pnm_tokens(data: bytes, wanted: int) -> list[int]:
    """The first ``wanted`` integers after a P1..P6 magic, skipping whitespace and comments."""
    out: list[int] = []
    pos, end = 2, min(len(data), _PNM_MAX_HEADER)
    while len(out) < wanted:
        while pos < end and (data[pos : pos + 1].isspace() or data[pos] == ord("#")):
            if data[pos] == ord("#"):
                while pos < end and data[pos] not in b"\r\n":
                    pos += 1
            else:
                pos += 1
        start = pos
        while pos < end and data[pos : pos + 1].isdigit():
            pos += 1
        if pos == start or pos >= end:
            msg = "truncated or malformed PNM header"
            raise HeaderError(msg)
        out.append(int(data[start:pos]))
    return out


def _pnm(data: bytes) -> tuple[int, int]:
    if data[1] == ord("7"):
        return _pam(data)
    width, height = _pnm_tokens(data, 2)
    return width, height


def _pam(data: bytes) -> tuple[int, int]:
    head = data[:_PNM_MAX_HEADER]
    if b"ENDHDR" not in head:
        msg = "truncated PAM header (no ENDHDR)"
        raise HeaderError(msg)
    fields: dict[bytes, int] = {}
    for line in head.split(b"ENDHDR", 1)[0].splitlines()[1:]:
        parts = line.split()
        if len(parts) == 2 and parts[0] in {b"WIDTH", b"HEIGHT"} and parts[1].isdigit():  # noqa: PLR2004
            fields[parts[0]] = int(parts[1])
    if b"WIDTH" not in fields or b"HEIGHT" not in fields:
        msg = "PAM header has no WIDTH or HEIGHT"
        raise HeaderError(msg)
    return fields[b"WIDTH"], fields[b"HEIGHT"]


def _format_of(data: bytes) -> str | None:
    if data.startswith(_PNG):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] in {b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"}:
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if len(data) >= 3 and data[0] == ord("P") and data[1] in b"1234567" and data[2:3].isspace():  # noqa: PLR2004
        return "pnm"
    return None


def _as_bytes(data: Any) -> bytes:  # noqa: ANN401 - any bytes-like object
    if isinstance(data, bytes):
        return data
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8).tobytes()
    return bytes(memoryview(data).cast("B"))


def read_image_header(data: Any) -> ImageHeader:  # noqa: ANN401 - any bytes-like object
    """The format and the declared size of an encoded image, from its first bytes.

    Nothing is decoded. Only the bytes that hold the size are read (a TIFF directory may be
    anywhere in the file, so pass the whole file).

    Args:
        data: The encoded image (``bytes``, ``bytearray``, ``memoryview``, uint8 array).

    Raises:
        InvalidInputError: if the format is not one of :data:`HEADER_FORMATS`, the header is
            truncated or malformed, or it declares a zero size.
    """
    raw = _as_bytes(data)
    fmt = _format_of(raw)
    if fmt is None:
        msg = "not a PNG, JPEG, BMP, TIFF, WebP or PNM image"
        raise HeaderError(msg)
    parse = {"png": _png, "jpeg": _jpeg, "bmp": _bmp, "tiff": _tiff, "webp": _webp, "pnm": _pnm}
    try:
        width, height = parse[fmt](raw)
    except (struct.error, IndexError) as err:  # a field cut off where no length was checked
        msg = f"truncated {fmt.upper()} header"
        raise HeaderError(msg) from err
    if width <= 0 or height <= 0:
        msg = f"{fmt.upper()} declares an empty image ({width}x{height})"
        raise HeaderError(msg)
    return ImageHeader(fmt, width, height)


def check_image_header(
    data: Any,  # noqa: ANN401 - any bytes-like object
    *,
    max_pixels: int = MAX_DECLARED_PIXELS,
) -> ImageHeader:
    """:func:`read_image_header`, refusing a declared size over ``max_pixels``.

    Raises:
        InvalidInputError: as :func:`read_image_header`, or if the image declares more than
            ``max_pixels`` pixels or a side over :data:`MAX_DECODED_SIDE` (it is never
            decoded).
    """
    header = read_image_header(data)
    if max(header.width, header.height) > MAX_DECODED_SIDE:
        msg = (
            f"{header.format.upper()} declares {header.width}x{header.height} pixels, a side "
            f"over the {MAX_DECODED_SIDE:,} pixels an image may have; not decoded"
        )
        raise DeclaredSizeError(msg)
    if header.pixels > max_pixels:
        msg = (
            f"{header.format.upper()} declares {header.width}x{header.height} pixels "
            f"({header.pixels / 1e6:.0f} megapixels), over the limit of "
            f"{max_pixels / 1e6:g} megapixels; not decoded"
        )
        raise DeclaredSizeError(msg)
    return header


def decode_image(
    data: Any,  # noqa: ANN401 - any bytes-like object
    *,
    flags: int | None = None,
    max_pixels: int = MAX_DECLARED_PIXELS,
) -> npt.NDArray[Any]:
    """Decode an encoded image with OpenCV once its header passed :func:`check_image_header`.

    The one decoder for images that come from outside (files, messages, uploads).

    Args:
        data: The encoded image.
        flags: ``cv2.imdecode`` flags (default ``IMREAD_UNCHANGED``: depth and alpha kept).
        max_pixels: The most pixels the header may declare.

    Returns:
        The decoded array (BGR, BGRA or grey; 8 or 16 bit), as OpenCV gives it.

    Raises:
        InvalidInputError: if the header is refused, or the data do not decode.
    """
    import cv2

    header = check_image_header(data, max_pixels=max_pixels)
    buf = (
        np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if isinstance(data, np.ndarray)
        else np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    )
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED if flags is None else flags)
    except cv2.error as err:
        msg = f"corrupt {header.format.upper()} image ({str(err).strip() or 'decode failed'})"
        raise InvalidInputError(msg) from err
    if image is None or image.size == 0:
        msg = f"corrupt or truncated {header.format.upper()} image ({buf.size} bytes)"
        raise InvalidInputError(msg)
    h, w = int(image.shape[0]), int(image.shape[1])
    if h * w > max_pixels:  # a decoder that read another size than the header's
        msg = f"decoded {w}x{h} pixels, over the limit of {max_pixels / 1e6:g} megapixels"
        raise InvalidInputError(msg)
    return np.asarray(image)
