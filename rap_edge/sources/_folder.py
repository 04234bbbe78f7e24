"""Image files as a frame source: every image of one folder, or a single image.

A folder's images are its regular files with an image extension (case-insensitive), in natural
order (``img2.png`` before ``img10.png``); subfolders and hidden files (names starting with a
dot, such as macOS ``._`` companions) are ignored. Files are decoded with OpenCV, keeping 16-bit
depth and alpha (``IMREAD_UNCHANGED``), except JPEG files, which are read in colour so that their
EXIF orientation is applied.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import InvalidInputError
from rap_edge.sources._base import FrameSource, SourceKind, _Read

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_FILE_BYTES",
    "ImageFilesSource",
    "is_image_path",
    "list_images",
    "read_image_file",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)
"""File extensions read as images (compared in lower case)."""

MAX_IMAGE_FILE_BYTES = 1 << 30
"""Image files larger than this (1 GiB) are skipped without being read."""

_JPEG = frozenset({".jpg", ".jpeg"})


def _natural_key(name: str) -> tuple[tuple[int | str, ...], str]:
    parts = re.split(r"(\d+)", name.casefold())
    # re.split with a group alternates text and digits, so the types line up position by position.
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def is_image_path(path: Path) -> bool:
    """Whether the file name has an image extension."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in natural order (see the module notes).

    Raises:
        InvalidInputError: if the folder cannot be listed.
    """
    try:
        entries = list(folder.iterdir())
    except OSError as err:
        msg = f"{folder}: cannot list the folder ({err.strerror or err})"
        raise InvalidInputError(msg) from err
    files = [p for p in entries if is_image_path(p) and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=lambda p: _natural_key(p.name))


def read_image_file(path: Path) -> np.ndarray:
    """Decode one image file as OpenCV gives it (BGR/BGRA/grey, 8 or 16 bit).

    Raises:
        InvalidInputError: if the file cannot be read, is empty or too large, or does not
            decode.
    """
    import cv2

    try:
        size = path.stat().st_size
        if size == 0:
            msg = "empty file"
            raise InvalidInputError(msg)
        if size > MAX_IMAGE_FILE_BYTES:
            msg = f"{size} bytes is over the {MAX_IMAGE_FILE_BYTES} byte limit"
            raise InvalidInputError(msg)
        data = path.read_bytes()
    except OSError as err:
        msg = f"cannot read the file ({err.strerror or err})"
        raise InvalidInputError(msg) from err
    flags = cv2.IMREAD_COLOR if path.suffix.lower() in _JPEG else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as err:
        msg = f"cannot decode the image ({str(err).strip()})"
        raise InvalidInputError(msg) from err
    if image is None:
        msg = f"cannot decode the image ({len(data)} bytes; corrupt or not a supported format)"
        raise InvalidInputError(msg)
    return np.asarray(image)


class ImageFilesSource(FrameSource):
    """Frames from image files (kind ``folder`` or ``image``); timestamps are ``None``."""

    def __init__(
        self, paths: Sequence[Path], *, kind: SourceKind, name: str, loop: bool = False
    ) -> None:
        """A source over the given files, in the given order.

        Args:
            paths: The image files.
            kind: ``folder`` or ``image``.
            name: The folder or file, for messages.
            loop: Start over after the last file.
        """
        super().__init__(kind, name, total=len(paths), loop=loop)
        self.paths = list(paths)

    def _label(self, source: str) -> str:
        return PurePath(source).name

    def _pass(self, number: int) -> Iterator[_Read]:
        del number
        for path in self.paths:
            if self._closed:
                return
            try:
                yield _Read(str(path), array=read_image_file(path))
            except InvalidInputError as err:
                yield _Read(str(path), error=str(err))

    def _describe(self) -> str:
        if self.kind == "image":
            return f"image {self.name}"
        return f"image folder {self.name} ({len(self.paths)} images)"
