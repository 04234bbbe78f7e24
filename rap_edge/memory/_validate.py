"""Validation of everything a user can hand to the memory: text fields, images and vectors."""

from __future__ import annotations

import hashlib
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

    import numpy.typing as npt

MAX_NAME_CHARS = 128
MAX_CATEGORY_CHARS = 64
MAX_INFO_CHARS = 4000
MAX_ALIASES = 32
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 100_000_000
MIN_IMAGE_SIDE = 16
"""The shortest side, in pixels, a reference image may have. Measured on the 4 faces of the check
photos, cropped tightly or with half a face of margin and scaled down to S x S: the face detector
finds no face at S = 2..12 (0 of 32 crops), 2 of 8 at 16, all from 40; an embedding matches its
own full-size face at the calibrated threshold in 0 of 32 crops at S = 2..12, 1 of 8 at 16, and
every tight crop from 20. Under 16 pixels an image cannot hold a face or an object."""
MAX_VECTOR_DIM = 65_536

# Magic numbers of the formats OpenCV decodes, mapped to the extension we store them under.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"BM", "bmp"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
)


def _control_chars(text: str, *, allow_newlines: bool) -> list[str]:
    allowed = {"\n", "\t", "\r"} if allow_newlines else set()
    return [
        f"U+{ord(ch):04X}"
        for ch in text
        if ch not in allowed and unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"}
    ]


def clean_name(value: object, *, what: str = "name") -> str:
    """Return a stripped, validated concept name (or alias).

    Raises:
        InvalidInputError: if it is not a string, empty, too long or holds control characters.
    """
    if not isinstance(value, str):
        msg = f"{what} must be text, got {type(value).__name__}"
        raise InvalidInputError(msg)
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        msg = f"{what} is empty"
        raise InvalidInputError(msg)
    if len(name) > MAX_NAME_CHARS:
        msg = f"{what} {name[:20]!r}... has {len(name)} characters; the limit is {MAX_NAME_CHARS}"
        raise InvalidInputError(msg)
    bad = _control_chars(name, allow_newlines=False)
    if bad:
        msg = f"{what} {name!r} contains control characters ({', '.join(bad[:3])})"
        raise InvalidInputError(msg)
    return name


def clean_category(value: object) -> str:
    """Return a validated, lower-case category."""
    category = clean_name(value, what="category").lower()
    if len(category) > MAX_CATEGORY_CHARS:
        msg = f"category {category[:20]!r}... is longer than {MAX_CATEGORY_CHARS} characters"
        raise InvalidInputError(msg)
    return category


def clean_info(value: object) -> str:
    """Return validated free-text info (newlines and tabs allowed, capped in length)."""
    if not isinstance(value, str):
        msg = f"info must be text, got {type(value).__name__}"
        raise InvalidInputError(msg)
    info = unicodedata.normalize("NFC", value).strip()
    if len(info) > MAX_INFO_CHARS:
        msg = f"info has {len(info)} characters; the limit is {MAX_INFO_CHARS}"
        raise InvalidInputError(msg)
    bad = _control_chars(info, allow_newlines=True)
    if bad:
        msg = f"info contains control characters ({', '.join(bad[:3])})"
        raise InvalidInputError(msg)
    return info


def clean_aliases(values: Iterable[object], *, name: str) -> tuple[str, ...]:
    """Validate aliases; drop duplicates (case-insensitive) and any equal to the name."""
    seen = {name.casefold()}
    out: list[str] = []
    for value in values:
        alias = clean_name(value, what="alias")
        if alias.casefold() not in seen:
            seen.add(alias.casefold())
            out.append(alias)
    if len(out) > MAX_ALIASES:
        msg = f"{len(out)} aliases given; the limit is {MAX_ALIASES}"
        raise InvalidInputError(msg)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CheckedImage:
    """An image file that decoded successfully.

    Attributes:
        data: The file's bytes, unchanged.
        sha256: Hex SHA-256 of ``data``.
        ext: Extension for the stored copy, from the file's magic number.
        width: Decoded width in pixels.
        height: Decoded height in pixels.
        source_name: Base name of the file it came from.
    """

    data: bytes
    sha256: str
    ext: str
    width: int
    height: int
    source_name: str


def _sniff_ext(data: bytes) -> str | None:
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _check_size(source: str, kind: str, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        msg = (
            f"{source}: {kind} {width}x{height} pixels, over the {MAX_IMAGE_PIXELS} pixel "
            "image limit"
        )
        raise InvalidInputError(msg)
    if min(width, height) < MIN_IMAGE_SIDE:
        msg = (
            f"{source}: {kind} {width}x{height} pixels, too small to hold a face or an object "
            f"(a reference image needs at least {MIN_IMAGE_SIDE} pixels on each side)"
        )
        raise InvalidInputError(msg)


def check_image_bytes(data: bytes, *, source: str) -> CheckedImage:
    """Check that ``data`` is a decodable image; ``source`` names it in errors.

    The size its header declares is checked before anything is decoded (a small file can
    declare gigapixels): at most :data:`MAX_IMAGE_PIXELS` pixels, and at least
    :data:`MIN_IMAGE_SIDE` pixels on each side.
    """
    import cv2

    from rap_edge.sources._header import read_image_header

    if not data:
        msg = f"{source}: file is empty"
        raise InvalidInputError(msg)
    if len(data) > MAX_IMAGE_BYTES:
        msg = f"{source}: {len(data)} bytes is over the {MAX_IMAGE_BYTES} byte image limit"
        raise InvalidInputError(msg)
    ext = _sniff_ext(data)
    if ext is None:
        msg = f"{source}: not an image (expected PNG, JPEG, BMP, TIFF or WebP data)"
        raise InvalidInputError(msg)
    try:
        header = read_image_header(data)
    except InvalidInputError as err:
        msg = f"{source}: corrupt {ext.upper()} image ({err})"
        raise InvalidInputError(msg) from err
    _check_size(source, "declares", header.width, header.height)
    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:
        msg = f"{source}: corrupt {ext.upper()} image ({err.msg.strip() or 'decode failed'})"
        raise InvalidInputError(msg) from err
    if pixels is None or pixels.size == 0:
        msg = f"{source}: corrupt or truncated {ext.upper()} image (OpenCV cannot decode it)"
        raise InvalidInputError(msg)
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    _check_size(source, "is", width, height)
    return CheckedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        ext=ext,
        width=width,
        height=height,
        source_name=Path(source).name,
    )


def check_image_file(path: str | os.PathLike[str]) -> CheckedImage:
    """Read and check an image file, naming the file in every error.

    Only a regular file is read (a FIFO or a device is refused without blocking), and at most
    :data:`MAX_IMAGE_BYTES` of it.
    """
    from rap_edge.sources._files import read_user_file

    data = read_user_file(path, max_bytes=MAX_IMAGE_BYTES, what="file")
    return check_image_bytes(data, source=str(Path(path)))


def check_vectors(
    vectors: object, *, dim: int | None, count: int | None = None, what: str = "vectors"
) -> npt.NDArray[np.float32]:
    """Validate vectors and return them as a C-contiguous float32 array of shape [n, dim].

    A single 1-D vector is accepted and returned as shape [1, dim].

    Raises:
        InvalidInputError: on a wrong shape or dimension, non-finite values or a zero norm.
    """
    try:
        arr = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError) as err:
        msg = f"{what} must be numeric arrays ({err})"
        raise InvalidInputError(msg) from err
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:  # noqa: PLR2004 - a matrix
        msg = f"{what} must have shape [n, dim], got shape {list(arr.shape)}"
        raise InvalidInputError(msg)
    n, d = arr.shape
    if count is not None and n != count:
        msg = f"{what}: expected {count} vector(s), got {n}"
        raise InvalidInputError(msg)
    if not 0 < d <= MAX_VECTOR_DIM:
        msg = f"{what}: dimension {d} is outside 1..{MAX_VECTOR_DIM}"
        raise InvalidInputError(msg)
    if dim is not None and d != dim:
        msg = f"{what}: dimension {d} does not match the encoder's dimension {dim}"
        raise InvalidInputError(msg)
    if not np.isfinite(arr).all():
        row = int(np.nonzero(~np.isfinite(arr).all(axis=1))[0][0])
        msg = f"{what}: vector {row} contains NaN or infinite values"
        raise InvalidInputError(msg)
    norms = np.linalg.norm(arr, axis=1)
    # float32 storage: a norm this small loses all direction once cast.
    tiny = norms < math.sqrt(np.finfo(np.float32).tiny)
    if tiny.any():
        row = int(np.nonzero(tiny)[0][0])
        msg = f"{what}: vector {row} has zero norm (cosine similarity is undefined)"
        raise InvalidInputError(msg)
    return np.ascontiguousarray(arr, dtype=np.float32)
