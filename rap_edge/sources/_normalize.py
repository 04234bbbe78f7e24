"""Normalisation of decoded frames to contiguous BGR uint8, the pipeline's one pixel format.

Channel order comes from an optional ``encoding`` (ROS ``sensor_msgs/Image`` names such as
``rgb8``, ``mono16``, ``16UC1``, ``bayer_rggb8``, ``yuv422_yuy2``, or the plain orders ``bgr``,
``rgb``, ``bgra``, ``rgba``, ``gray``); without one, 1 channel is grey, 3 are BGR and 4 are BGRA
(OpenCV's conventions). Bit depth comes from the array's dtype:

- ``uint8`` is kept;
- ``uint16`` is shifted right by 8 bits (``v >> 8``): the full 16-bit range maps linearly onto
  0..255, so 10- or 12-bit data stored in 16 bits looks dark. There is deliberately no per-frame
  contrast stretch, which would make the brightness of a scene flicker from frame to frame;
- ``float16/32/64`` are read as 0..1, scaled by 255, clipped to 0..255 and rounded; NaN or
  infinite values are refused.

Alpha is dropped, not composited. Large frames are kept at full resolution (the pipeline
downscales a copy for detection and crops from the original); frames over
:data:`MAX_FRAME_PIXELS` are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "ENCODINGS",
    "MAX_FRAME_PIXELS",
    "PixelEncoding",
    "check_bgr_image",
    "lookup_encoding",
    "normalize_frame",
]

MAX_FRAME_PIXELS = 100_000_000
"""Frames with more pixels than this (100 megapixels) are refused as absurd."""


@dataclass(frozen=True, slots=True)
class PixelEncoding:
    """How the channels of an encoding are laid out.

    Attributes:
        name: The canonical name (as ROS spells it where ROS has it).
        order: ``bgr``, ``rgb``, ``bgra``, ``rgba``, ``gray``, ``bayer_rggb``, ``bayer_bggr``,
            ``bayer_gbrg``, ``bayer_grbg``, ``uyvy`` or ``yuyv``.
        channels: Channels per pixel in the array (2 for the packed YUV 4:2:2 orders).
        bits: 8 or 16 where the encoding fixes the depth, ``None`` for the plain orders.
    """

    name: str
    order: str
    channels: int
    bits: int | None


def _table() -> dict[str, PixelEncoding]:
    entries: list[tuple[str, str, int, int | None]] = [
        ("bgr8", "bgr", 3, 8),
        ("rgb8", "rgb", 3, 8),
        ("bgra8", "bgra", 4, 8),
        ("rgba8", "rgba", 4, 8),
        ("mono8", "gray", 1, 8),
        ("bgr16", "bgr", 3, 16),
        ("rgb16", "rgb", 3, 16),
        ("bgra16", "bgra", 4, 16),
        ("rgba16", "rgba", 4, 16),
        ("mono16", "gray", 1, 16),
        ("8UC1", "gray", 1, 8),
        ("8UC3", "bgr", 3, 8),
        ("8UC4", "bgra", 4, 8),
        ("16UC1", "gray", 1, 16),
        ("16UC3", "bgr", 3, 16),
        ("16UC4", "bgra", 4, 16),
        ("bayer_rggb8", "bayer_rggb", 1, 8),
        ("bayer_bggr8", "bayer_bggr", 1, 8),
        ("bayer_gbrg8", "bayer_gbrg", 1, 8),
        ("bayer_grbg8", "bayer_grbg", 1, 8),
        ("bayer_rggb16", "bayer_rggb", 1, 16),
        ("bayer_bggr16", "bayer_bggr", 1, 16),
        ("bayer_gbrg16", "bayer_gbrg", 1, 16),
        ("bayer_grbg16", "bayer_grbg", 1, 16),
        ("yuv422", "uyvy", 2, 8),
        ("uyvy", "uyvy", 2, 8),
        ("yuv422_yuy2", "yuyv", 2, 8),
        ("yuyv", "yuyv", 2, 8),
        ("bgr", "bgr", 3, None),
        ("rgb", "rgb", 3, None),
        ("bgra", "bgra", 4, None),
        ("rgba", "rgba", 4, None),
        ("gray", "gray", 1, None),
        ("grey", "gray", 1, None),
        ("mono", "gray", 1, None),
    ]
    return {
        name.lower(): PixelEncoding(name, order, ch, bits) for name, order, ch, bits in entries
    }


ENCODINGS: dict[str, PixelEncoding] = _table()
"""Known encodings by lower-case name."""


def check_bgr_image(image: object, what: str = "frame") -> npt.NDArray[np.uint8]:
    """``image`` itself if it is the pipeline's pixel format: a BGR uint8 array [H, W, 3].

    The one check every stage that takes pixels runs (the pipeline, detectors, encoders); it
    converts nothing (:func:`normalize_frame` does) and does not require C-contiguity.

    Args:
        image: The array to check.
        what: What it is, for the message (``frame``, ``image #2``, ...).

    Raises:
        InvalidInputError: naming ``what`` and the type, dtype or shape at fault, if it is not
            a numpy array of uint8 with shape [H, W, 3] and at least one pixel.
    """
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3  # noqa: PLR2004
        or image.shape[2] != 3  # noqa: PLR2004
        or 0 in image.shape
    ):
        got = (
            f"{image.dtype} {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        msg = (
            f"{what} must be a BGR uint8 image [H, W, 3], got {got} "
            "(rap_edge.sources.normalize_frame converts other formats)"
        )
        raise InvalidInputError(msg)
    return image


def lookup_encoding(encoding: str) -> PixelEncoding:
    """The layout of a named encoding (case-insensitive).

    Raises:
        InvalidInputError: if the encoding is not one this module converts.
    """
    found = ENCODINGS.get(encoding.strip().lower())
    if found is None:
        msg = f"unsupported image encoding {encoding!r}"
        raise InvalidInputError(msg)
    return found


def _default_encoding(channels: int, shape: tuple[int, ...]) -> PixelEncoding:
    if channels == 1:
        return ENCODINGS["gray"]
    if channels == 3:  # noqa: PLR2004
        return ENCODINGS["bgr"]
    if channels == 4:  # noqa: PLR2004
        return ENCODINGS["bgra"]
    msg = (
        f"frame of shape {shape} has {channels} channels; expected 1 (grey), 3 (BGR) "
        f"or 4 (BGRA), or an encoding that says otherwise"
    )
    raise InvalidInputError(msg)


def _to_uint8(a: npt.NDArray[Any], what: str) -> npt.NDArray[np.uint8]:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            msg = f"{what}: float frame contains NaN or infinite values"
            raise InvalidInputError(msg)
        scaled: npt.NDArray[np.float32] = np.rint(np.clip(a.astype(np.float32) * 255.0, 0, 255))
        return scaled.astype(np.uint8)
    msg = f"{what}: dtype {a.dtype} is not supported (expected uint8, uint16, or float in 0..1)"
    raise InvalidInputError(msg)


def _conversion_code(order: str) -> int | None:
    import cv2

    # ROS names a Bayer pattern by its first row, OpenCV by the second row's first two pixels;
    # the mapping is cv_bridge's (checked by the tests with synthetic mosaics).
    codes: dict[str, int | None] = {
        "bgr": None,
        "rgb": cv2.COLOR_RGB2BGR,
        "bgra": cv2.COLOR_BGRA2BGR,
        "rgba": cv2.COLOR_RGBA2BGR,
        "gray": cv2.COLOR_GRAY2BGR,
        "bayer_rggb": cv2.COLOR_BayerBG2BGR,
        "bayer_bggr": cv2.COLOR_BayerRG2BGR,
        "bayer_gbrg": cv2.COLOR_BayerGR2BGR,
        "bayer_grbg": cv2.COLOR_BayerGB2BGR,
        "uyvy": cv2.COLOR_YUV2BGR_UYVY,
        "yuyv": cv2.COLOR_YUV2BGR_YUY2,
    }
    return codes[order]


def normalize_frame(array: npt.ArrayLike, encoding: str | None = None) -> npt.NDArray[np.uint8]:
    """Convert a decoded frame to a C-contiguous BGR uint8 array [H, W, 3].

    Accepted: [H, W] or [H, W, 1] grey, [H, W, 3] (BGR unless ``encoding`` says RGB),
    [H, W, 4] (BGRA unless ``encoding`` says RGBA; alpha is dropped), single-channel Bayer
    mosaics and [H, W, 2] packed YUV 4:2:2 when ``encoding`` names them; dtype uint8, uint16
    (``>> 8``) or float in 0..1 (see the module notes). The result may be the input array itself
    when it already is contiguous BGR uint8.

    Args:
        array: The frame.
        encoding: A ROS image encoding (``rgb8``, ``bgr8``, ``rgba8``, ``mono16``, ``16UC1``,
            ...) or a plain channel order (``rgb``, ``bgr``, ``gray``, ...); case-insensitive.
            ``None`` uses OpenCV's orders (grey, BGR, BGRA by channel count).

    Raises:
        InvalidInputError: for an empty or boolean array, an unsupported shape, dtype or
            encoding, channels or depth that do not match the encoding, NaN or infinite
            floats, or more than :data:`MAX_FRAME_PIXELS` pixels.
    """
    a: npt.NDArray[Any] = np.asarray(array)
    if a.dtype == np.bool_:
        msg = f"frame of shape {a.shape} is boolean (a mask?), not an image"
        raise InvalidInputError(msg)
    if a.ndim not in {2, 3} or a.size == 0:
        msg = f"frame of shape {a.shape} is not an image; expected [H, W] or [H, W, C]"
        raise InvalidInputError(msg)
    height, width = int(a.shape[0]), int(a.shape[1])
    if height * width > MAX_FRAME_PIXELS:
        msg = (
            f"frame of {width}x{height} ({height * width / 1e6:.0f} megapixels) is over the "
            f"limit of {MAX_FRAME_PIXELS // 1_000_000} megapixels"
        )
        raise InvalidInputError(msg)
    channels = 1 if a.ndim == 2 else int(a.shape[2])  # noqa: PLR2004
    if encoding is None:
        enc = _default_encoding(channels, a.shape)
    else:
        enc = lookup_encoding(encoding)
        if channels != enc.channels:
            msg = (
                f"encoding {encoding!r} needs {enc.channels} channel(s), but the frame has "
                f"shape {a.shape}"
            )
            raise InvalidInputError(msg)
        if enc.bits is not None and a.dtype != (np.uint8 if enc.bits == 8 else np.uint16):  # noqa: PLR2004
            msg = f"encoding {encoding!r} needs uint{enc.bits} pixels, but the frame is {a.dtype}"
            raise InvalidInputError(msg)
    what = f"frame of shape {a.shape}" + (f" ({encoding})" if encoding else "")
    if enc.order in {"uyvy", "yuyv"} and width % 2:
        msg = f"{what}: packed YUV 4:2:2 needs an even width"
        raise InvalidInputError(msg)
    if a.ndim == 3 and channels == 1:  # noqa: PLR2004
        a = a[:, :, 0]
    a8 = _to_uint8(a, what)
    code = _conversion_code(enc.order)
    if code is None:
        return np.ascontiguousarray(a8)
    import cv2

    try:
        out = cv2.cvtColor(np.ascontiguousarray(a8), code)
    except cv2.error as err:
        msg = f"{what}: OpenCV cannot convert it from {enc.name}: {str(err).strip()}"
        raise InvalidInputError(msg) from err
    return np.ascontiguousarray(out, dtype=np.uint8)
