"""The frame record and the behaviour every frame source shares.

A source yields :class:`Frame` objects in BGR uint8. A frame that cannot be read or decoded is
skipped: it is counted in ``skipped``, its reason is kept in ``errors`` (the last
:data:`MAX_ERRORS` messages) and iteration goes on. Problems that are not one frame's (a stream
that stops delivering, a recording whose storage breaks) end the iteration and are noted in
``errors`` too, without counting as skipped frames.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rap_edge.errors import InvalidInputError
from rap_edge.sources._normalize import normalize_frame

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType
    from typing import Self

    import numpy as np
    import numpy.typing as npt

__all__ = ["MAX_ERRORS", "Frame", "FrameSource", "SourceKind"]

SourceKind = Literal["video", "camera", "folder", "image", "rosbag2"]

MAX_ERRORS = 100
"""How many error messages a source keeps (the most recent ones)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a source, ready for the pipeline.

    Attributes:
        image: The pixels, C-contiguous BGR uint8 [H, W, 3], at full resolution.
        index: 0-based position of the frame in what the source has read in this iteration,
            counting skipped frames too (so gaps show where frames were dropped); it keeps
            increasing when the source loops.
        timestamp: Seconds. Video file: the frame's position in the video; camera or stream:
            wall-clock time (``time.time()``) when the frame arrived; rosbag2: the message's log
            (receive) time; image folder or single image: ``None`` (files have no time). When
            looping, later passes are shifted so that timestamps keep increasing.
        source: Where the frame came from: the image file's path (folder, single image), the
            video's path, ``camera:0`` or the stream URL (password hidden), or
            ``bag:PATH#TOPIC``.
        encoding: How the source described the pixels: the ROS ``encoding`` of an Image message
            or the ``format`` of a CompressedImage; ``None`` for files and captures.
        orig_dtype: The dtype of the decoded frame before normalisation (``uint16``, ...).
        orig_shape: Its shape before normalisation.
    """

    image: npt.NDArray[np.uint8]
    index: int
    timestamp: float | None
    source: str
    encoding: str | None = None
    orig_dtype: str = "uint8"
    orig_shape: tuple[int, ...] = ()

    @property
    def height(self) -> int:
        """Rows of the image."""
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        """Columns of the image."""
        return int(self.image.shape[1])


@dataclass(slots=True)
class _Read:
    """One position of a source: a decoded array, or the reason it could not be had."""

    source: str
    array: npt.NDArray[Any] | None = None
    timestamp: float | None = None
    encoding: str | None = None  # for normalize_frame
    described: str | None = None  # for Frame.encoding, when it differs from ``encoding``
    error: str | None = None


class FrameSource(ABC):
    """An iterable of :class:`Frame`, and a context manager that releases what it holds.

    Attributes:
        kind: ``video``, ``camera``, ``folder``, ``image`` or ``rosbag2``.
        name: What the source reads, for messages (a path, ``camera:0``, a URL, ...).
        total: Frames per pass when known (for progress bars): images in a folder, frames the
            video's header announces, messages on the bag topic; ``None`` for cameras and
            streams, and whenever ``loop`` is on.
        loop: Whether iteration starts over at the end (ignored by cameras and streams).
        skipped: Frames skipped so far because they could not be read or decoded.
        errors: The most recent :data:`MAX_ERRORS` messages about skipped frames and about
            iterations that ended early, oldest first.
        independent: Every frame is an unrelated photo (a single image, or a folder of
            photos): nothing seen in one frame may carry over to the next. False for videos,
            cameras, streams, recordings and image sequences.
    """

    kind: SourceKind
    name: str
    total: int | None
    loop: bool
    skipped: int
    errors: list[str]
    independent: bool = False

    def __init__(
        self, kind: SourceKind, name: str, *, total: int | None, loop: bool = False
    ) -> None:
        """Set the shared attributes (for subclasses)."""
        self.kind = kind
        self.name = name
        self.loop = loop and kind != "camera"
        self.total = None if self.loop else total
        self.skipped = 0
        self.errors = []
        self._closed = False
        self._period_hint = 1.0 / 30.0  # seconds between frames, used only to shift loops

    # -- to be provided by each kind ------------------------------------------------------------

    @abstractmethod
    def _pass(self, number: int) -> Iterator[_Read]:
        """Read the source once from its start (``number`` counts the passes, from 0)."""

    @abstractmethod
    def _describe(self) -> str:
        """What the source is, in a few words."""

    def _close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the source holds."""

    # -- shared behaviour -----------------------------------------------------------------------

    def _note(self, message: str) -> None:
        """Keep a message in ``errors`` (bounded)."""
        self.errors.append(message)
        if len(self.errors) > MAX_ERRORS:
            del self.errors[: len(self.errors) - MAX_ERRORS]

    def _label(self, source: str) -> str:
        return source

    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames; skip (count and note) those that cannot be read or decoded.

        Raises:
            InvalidInputError: if the source has been closed.
        """
        if self._closed:
            msg = f"{self.name}: the source is closed"
            raise InvalidInputError(msg)
        index = 0
        offset = 0.0
        number = 0
        while True:
            delivered = 0
            first: float | None = None
            last: float | None = None
            for item in self._pass(number):
                position = index
                index += 1
                image: npt.NDArray[np.uint8] | None = None
                error = item.error
                if error is None and item.array is not None:
                    try:
                        image = normalize_frame(item.array, item.encoding)
                    except InvalidInputError as err:
                        error = str(err)
                if image is None or item.array is None:
                    self.skipped += 1
                    self._note(
                        f"frame {position} ({self._label(item.source)}): {error or 'no image'}"
                    )
                    continue
                delivered += 1
                stamp = item.timestamp
                if stamp is not None:
                    first = stamp if first is None else first
                    last = stamp
                    stamp += offset
                yield Frame(
                    image,
                    position,
                    stamp,
                    item.source,
                    item.described or item.encoding,
                    str(item.array.dtype),
                    tuple(int(v) for v in item.array.shape),
                )
            if not self.loop or not delivered or self._closed:
                return
            if first is not None and last is not None:
                span = last - first
                period = span / (delivered - 1) if delivered > 1 else self._period_hint
                offset += span + (period if math.isfinite(period) and period > 0 else 0.0)
            number += 1

    def describe(self) -> str:
        """A one-line description for logs and the command line."""
        text = self._describe()
        if self.loop:
            text += ", looping"
        if self.skipped:
            text += f", {self.skipped} frame(s) skipped so far"
        return text

    def close(self) -> None:
        """Release the capture or recording; closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Self:
        """Use the source in a ``with`` block that closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the source."""
        self.close()

    def __repr__(self) -> str:
        """Kind and name."""
        return f"<{type(self).__name__} {self.kind} {self.name!r}>"
