"""Image conversions between ``sensor_msgs`` message fields and the pipeline's BGR uint8 arrays.

The ROS 2 pip wheels have no cv_bridge, so images are converted with numpy and OpenCV. Nothing
here imports ROS: the functions take a message's fields, so they are tested in plain Python and
the node passes ``msg.encoding, msg.height, ...`` through.

Decoding is :mod:`rap_edge.sources`' (the same code reads rosbag2 recordings); this module adds
the field-based signatures, an up-front size check, and the way back to an ``Image``. A
``CompressedImage`` is sized from its header before it is decoded
(:mod:`rap_edge.sources._header`), so a small message declaring gigapixels costs nothing.

Encodings (case-insensitive; :data:`rap_edge.sources.ENCODINGS` has the full table):

- ``bgr8``, ``rgb8``, ``bgra8``, ``rgba8`` (alpha dropped), ``mono8``, ``8UC1``, ``8UC3``,
  ``8UC4``, the Bayer mosaics (``bayer_rggb8``, ...);
- 16-bit ``mono16``, ``16UC1``, ``bgr16``, ``rgb16``, ...: in the byte order that
  ``is_bigendian`` gives, then scaled to 8 bits by a fixed ``v >> 8`` (divide by 256), not by the
  frame's maximum. A fixed scale keeps a scene's brightness steady from frame to frame; the
  price is that data using fewer than 16 bits (10/12-bit sensors, depth in millimetres) looks
  dark;
- packed YUV 4:2:2, as ``sensor_msgs/image_encodings.hpp`` (Jazzy) defines them: ``uyvy`` and
  its deprecated alias ``yuv422`` are **UYVY** (bytes U0 Y0 V0 Y1); ``yuyv`` and its deprecated
  alias ``yuv422_yuy2`` are **YUYV** (Y0 U0 Y1 V0). Both need an even width. The 4:2:0 and 4:4:4
  ones (``nv21``, ``nv24``) are not supported.

Row padding (``step`` longer than a row) is skipped. Every problem raises
:class:`rap_edge.errors.InvalidInputError`, a :class:`ValueError` whose message names the
encoding and sizes at fault.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, TypedDict, cast

import numpy as np

from rap_edge.errors import InvalidInputError
from rap_edge.sources import MAX_FRAME_PIXELS, compressed_msg_to_bgr, image_msg_to_bgr

if TYPE_CHECKING:
    import array

    import numpy.typing as npt

    BytesLike = bytes | bytearray | memoryview | array.array[int] | npt.NDArray[np.uint8]

__all__ = ["ImageFields", "bgr_to_image_fields", "compressed_to_bgr", "image_to_bgr"]


class ImageFields(TypedDict):
    """The fields of a ``sensor_msgs/Image`` (without its header): ``Image(**fields)``."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: bytes


def _checked_bytes(data: BytesLike, what: str) -> memoryview:
    try:
        # cast: numpy's stubs do not declare the buffer protocol that ndarray has
        return memoryview(cast("bytes", data)).cast("B")
    except TypeError as err:
        msg = f"{what}: data must be bytes-like (bytes, array.array('B'), ...), not {type(data)}"
        raise InvalidInputError(msg) from err


def image_to_bgr(  # noqa: PLR0913, PLR0917 (one argument per message field)
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool,
    data: BytesLike,
) -> npt.NDArray[np.uint8]:
    """Decode the fields of a ``sensor_msgs/Image`` to a C-contiguous BGR uint8 [H, W, 3] array.

    Args:
        encoding: The message's ``encoding`` (see the module notes for the supported ones).
        height: Rows.
        width: Pixels per row.
        step: Bytes per row, padding included (at least ``width`` times the pixel size).
        is_bigendian: Byte order of 16-bit data.
        data: ``height * step`` bytes (``bytes``, ``array.array('B')`` as rclpy gives, ...).

    Returns:
        A new array, or a view of ``data`` when it already is unpadded ``bgr8``.

    Raises:
        InvalidInputError: (a ``ValueError``) for an unknown encoding, a zero, negative or
            absurd size (over :data:`rap_edge.sources.MAX_FRAME_PIXELS` pixels), a ``step``
            shorter than a row, data that is not ``height * step`` bytes long (truncated or
            too long), or an odd width for packed YUV 4:2:2.
    """
    height, width, step = int(height), int(width), int(step)
    what = f"{encoding!r} image of {width}x{height}"
    if height <= 0 or width <= 0:
        msg = f"{what}: zero or negative size"
        raise InvalidInputError(msg)
    if height * width > MAX_FRAME_PIXELS:
        msg = (
            f"{what}: {height * width / 1e6:.0f} megapixels is over the limit of "
            f"{MAX_FRAME_PIXELS // 1_000_000} megapixels"
        )
        raise InvalidInputError(msg)
    fields = SimpleNamespace(
        encoding=encoding,
        height=height,
        width=width,
        step=step,
        is_bigendian=bool(is_bigendian),
        data=_checked_bytes(data, what),
    )
    return image_msg_to_bgr(fields)


def compressed_to_bgr(format: str, data: BytesLike) -> npt.NDArray[np.uint8]:  # noqa: A002
    """Decode the fields of a ``sensor_msgs/CompressedImage`` to BGR uint8 [H, W, 3].

    Args:
        format: The message's ``format`` (``jpeg``, ``png``, ``bgr8; jpeg compressed bgr8``, ...);
            the data's own header decides how it is decoded (``cv2.imdecode``), including
            ``16UC1; compressedDepth`` PNGs. Named like the message's field, as the other
            functions' arguments are.
        data: The compressed bytes. Their header is read first: an image declaring more
            than :data:`rap_edge.sources.MAX_FRAME_PIXELS` pixels (a decompression bomb),
            or in a format whose size cannot be read before decoding, is never decoded.

    Raises:
        InvalidInputError: (a ``ValueError``) when the data is empty, declares too many
            pixels, or does not decode.
    """
    fields = SimpleNamespace(
        format=format, data=_checked_bytes(data, f"compressed image ({format!r})")
    )
    return compressed_msg_to_bgr(fields)


def bgr_to_image_fields(img: npt.NDArray[np.uint8]) -> ImageFields:
    """The fields of a ``bgr8`` ``sensor_msgs/Image`` holding ``img`` (rows unpadded).

    With rclpy, ``Image(header=..., **fields)`` works (under 1 ms for 640x480 in Jazzy). With
    ``ROS_PYTHON_CHECK_FIELDS=1`` rclpy checks a ``bytes`` value byte by byte (~90 ms for
    640x480); ``array.array("B", fields["data"])`` skips that check.

    Args:
        img: BGR uint8 [H, W, 3], as the pipeline uses.

    Raises:
        InvalidInputError: (a ``ValueError``) for anything but a non-empty uint8 [H, W, 3] array.
    """
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape:  # noqa: PLR2004
        msg = f"expected a BGR uint8 image [H, W, 3], got {a.dtype} of shape {a.shape}"
        raise InvalidInputError(msg)
    height, width = int(a.shape[0]), int(a.shape[1])
    return ImageFields(
        encoding="bgr8",
        height=height,
        width=width,
        step=width * 3,
        is_bigendian=0,
        data=np.ascontiguousarray(a).tobytes(),
    )
