"""Image files as a frame source: every image of one folder, or a single image.

A folder's images are its regular files with an image extension (case-insensitive), in natural
order (``img2.png`` before ``img10.png``); subfolders and hidden files (names starting with a
dot, such as macOS ``._`` companions) are ignored. Files are decoded with OpenCV, keeping 16-bit
depth and alpha (``IMREAD_UNCHANGED``), except JPEG files, which are read in colour so that their
EXIF orientation is applied.

**Photos or a sequence.** The images of a folder are independent photos unless the folder
looks like the frames of one recording: every file name is one shared prefix followed by a
zero-padded frame number of one fixed width of at least :data:`SEQUENCE_MIN_DIGITS` digits
(``frame_000123.png``, ``cam0-0042.jpg``, ``000001.png``; what ``ffmpeg -i video
frame_%06d.png`` writes), at least two of them. ``<name>_00.jpg``-style numbering (two digits)
and mixed names are photos. :attr:`ImageFilesSource.independent` says which; ``rap-edge run
--sequence`` makes any folder a sequence. A single image is always a photo.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import TYPE_CHECKING

from rap_edge.errors import InvalidInputError
from rap_edge.sources._base import FrameSource, SourceKind, _Read

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_FILE_BYTES",
    "SEQUENCE_MIN_DIGITS",
    "ImageFilesSource",
    "is_image_path",
    "list_images",
    "looks_like_sequence",
    "read_image_file",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)
"""File extensions read as images (compared in lower case)."""

MAX_IMAGE_FILE_BYTES = 1 << 30
"""Image files larger than this (1 GiB) are skipped without being read."""

_JPEG = frozenset({".jpg", ".jpeg"})

SEQUENCE_MIN_DIGITS = 4
"""Least width of the zero-padded frame number in a sequence's file names."""

_FRAME_NAME = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")


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


def looks_like_sequence(paths: Sequence[Path]) -> bool:
    """Whether the files are named as the frames of one recording (see the module notes).

    Two or more files whose stems are all one prefix followed by a frame number of one width,
    at least :data:`SEQUENCE_MIN_DIGITS` digits, distinct numbers; the extension does not matter.
    """
    if len(paths) < 2:  # noqa: PLR2004
        return False
    prefixes: set[str] = set()
    widths: set[int] = set()
    numbers: set[int] = set()
    for path in paths:
        found = _FRAME_NAME.match(path.stem)
        if found is None:
            return False
        prefixes.add(found["prefix"])
        widths.add(len(found["number"]))
        numbers.add(int(found["number"]))
    (width,) = widths if len(widths) == 1 else (0,)
    return len(prefixes) == 1 and width >= SEQUENCE_MIN_DIGITS and len(numbers) == len(paths)


def read_image_file(path: Path) -> np.ndarray:
    """Decode one image file as OpenCV gives it (BGR/BGRA/grey, 8 or 16 bit).

    Only a regular file is read (never a FIFO or a device), at most
    :data:`MAX_IMAGE_FILE_BYTES`, and only once its header declares at most
    :data:`rap_edge.sources.MAX_FRAME_PIXELS` pixels (:mod:`rap_edge.sources._header`).

    Raises:
        InvalidInputError: if the file cannot be read, is not a regular file, is empty or too
            large, declares too many pixels, or does not decode.
    """
    import cv2

    from rap_edge.sources._files import read_regular_file
    from rap_edge.sources._header import DeclaredSizeError, decode_image

    data = read_regular_file(path, max_bytes=MAX_IMAGE_FILE_BYTES, what="image file")
    if not data:
        msg = "empty file"
        raise InvalidInputError(msg)
    flags = cv2.IMREAD_COLOR if path.suffix.lower() in _JPEG else cv2.IMREAD_UNCHANGED
    try:
        return decode_image(data, flags=flags)
    except DeclaredSizeError:
        raise
    except InvalidInputError as err:
        msg = f"cannot decode the image ({err})"
        raise InvalidInputError(msg) from err


class ImageFilesSource(FrameSource):
    """Frames from image files (kind ``folder`` or ``image``); timestamps are ``None``.

    Attributes:
        sequence: The files are frames of one recording (tracks may follow faces across
            them); else each file is an independent photo (:attr:`independent`).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        kind: SourceKind,
        name: str,
        loop: bool = False,
        sequence: bool | None = None,
    ) -> None:
        """A source over the given files, in the given order.

        Args:
            paths: The image files.
            kind: ``folder`` or ``image``.
            name: The folder or file, for messages.
            loop: Start over after the last file.
            sequence: Frames of one recording (True), independent photos (False), or decided
                from the file names (None, see :func:`looks_like_sequence`). A single image
                is always a photo.
        """
        super().__init__(kind, name, total=len(paths), loop=loop)
        self.paths = list(paths)
        if kind == "image" or len(self.paths) < 2:  # noqa: PLR2004
            self.sequence = False
        else:
            self.sequence = looks_like_sequence(self.paths) if sequence is None else sequence
        self.independent = not self.sequence

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
        what = "frames of one sequence" if self.sequence else "independent photos"
        return f"image folder {self.name} ({len(self.paths)} images, {what})"
