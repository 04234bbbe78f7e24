"""Uploaded images: size and pixel limits, the type sniffed from the bytes, then decoded.

Nothing about an upload is trusted but its bytes: the file name and the declared content type
are ignored. The format is recognised from the first bytes (JPEG, PNG or WebP), the width and
height are read from the header *before* decoding, so a small file that would decode into a
huge picture (a decompression bomb) is refused without allocating it.

``rap_edge.sources`` has no header check yet (``read_image_file`` decodes first); this is a
minimal one of the web app's own.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "ImageHeader", "decode_upload", "sniff_image"]

MAX_UPLOAD_BYTES = 15 * 1024 * 1024  # a phone's full-resolution JPEG is 3-8 MB
MAX_UPLOAD_PIXELS = 50_000_000  # 50 megapixels (a 200 MP phone photo is refused)

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (the ones that carry the size); C4, C8 and CC are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What the first bytes of an image say: its format and size."""

    format: str  # jpeg, png or webp
    width: int
    height: int

    @property
    def media_type(self) -> str:
        """The HTTP content type of this format."""
        return f"image/{self.format}"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:  # noqa: PLR2004
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # noqa: PLR2004 - fill byte
            i += 1
            continue
        if marker in {0xD8, 0x01} or 0xD0 <= marker <= 0xD7:  # noqa: PLR2004 - no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        if marker in {0xD9, 0xDA}:
            return None
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:  # noqa: PLR2004
        w, h = struct.unpack("<HH", data[26:30])
        return int(w & 0x3FFF), int(h & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25:  # noqa: PLR2004
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:  # noqa: PLR2004
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None


def sniff_image(data: bytes, what: str = "the upload") -> ImageHeader:
    """The format and size from the first bytes.

    Raises:
        InvalidInputError: not a JPEG, PNG or WebP image, or a header without a size.
    """
    size: tuple[int, int] | None
    if data.startswith(b"\xff\xd8\xff"):
        fmt, size = "jpeg", _jpeg_size(data)
    elif data.startswith(_PNG) and data[12:16] == b"IHDR" and len(data) >= 24:  # noqa: PLR2004
        w, h = struct.unpack(">II", data[16:24])
        fmt, size = "png", (int(w), int(h))
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        fmt, size = "webp", _webp_size(data)
    else:
        msg = f"{what} is not a JPEG, PNG or WebP image (its content says so, whatever its name)"
        raise InvalidInputError(msg)
    if size is None or size[0] <= 0 or size[1] <= 0:
        msg = f"{what}: a damaged {fmt.upper()} header (no image size)"
        raise InvalidInputError(msg)
    return ImageHeader(fmt, size[0], size[1])


def decode_upload(
    data: bytes,
    what: str = "the upload",
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> npt.NDArray[np.uint8]:
    """Check and decode an uploaded image into BGR uint8 (EXIF orientation applied).

    Raises:
        InvalidInputError: empty, larger than ``max_bytes``, not an image, more than
            ``max_pixels`` pixels, or undecodable.
    """
    if not data:
        msg = f"{what} is empty"
        raise InvalidInputError(msg)
    if len(data) > max_bytes:
        msg = f"{what} is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB"
        raise InvalidInputError(msg)
    header = sniff_image(data, what)
    pixels = header.width * header.height
    if pixels > max_pixels:
        msg = (
            f"{what} is {header.width}x{header.height} pixels ({pixels / 1e6:.0f} MP); the "
            f"limit is {max_pixels / 1e6:.0f} MP"
        )
        raise InvalidInputError(msg)
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3:  # noqa: PLR2004
        msg = f"{what}: the {header.format.upper()} data cannot be decoded (truncated or damaged)"
        raise InvalidInputError(msg)
    if image.shape[0] * image.shape[1] > max_pixels:  # a header that lied
        msg = f"{what}: more than {max_pixels / 1e6:.0f} MP once decoded"
        raise InvalidInputError(msg)
    return np.ascontiguousarray(image, dtype=np.uint8)
