"""Video files, cameras and network streams read through OpenCV's ``VideoCapture``.

A read that fails is not always a bad frame: at the end of a video or when a camera goes away
every read fails. So failed reads are held back and counted as skipped frames only when a good
frame follows them. A video ends at the first failed read once the frame count its header
announces is reached (or at once when it announces none); before that, a video, camera or
stream ends after :data:`MAX_CONSECUTIVE_FAILURES` failed reads in a row, and a camera or stream
also when no frame has arrived for :data:`LIVE_STALL_SECONDS`. An early end is noted in
``errors``. A dropped stream is not reconnected; open the source again.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from rap_edge.errors import BackendError, InvalidInputError
from rap_edge.sources._base import FrameSource, SourceKind, _Read

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

__all__ = [
    "LIVE_STALL_SECONDS",
    "MAX_CONSECUTIVE_FAILURES",
    "STREAM_TIMEOUT_MS",
    "CaptureSource",
    "open_camera",
    "open_video",
    "redact_url",
]

_MAX_PLAUSIBLE_FPS = 10_000.0

MAX_CONSECUTIVE_FAILURES = 25
"""Failed reads in a row after which a video, camera or stream ends."""

LIVE_STALL_SECONDS = 10.0
"""A camera or stream that has delivered no frame for this long ends."""

STREAM_TIMEOUT_MS = 10_000
"""Open and read timeouts given to OpenCV for network streams (FFmpeg and GStreamer honour
them), so that an unreachable or silent stream fails instead of hanging."""


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host += f":{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url


class CaptureSource(FrameSource):
    """Frames from an OpenCV capture (kind ``video`` or ``camera``); see the module notes.

    Attributes:
        fps: Frames per second the capture reports, or ``None``.
        frame_size: (width, height) the capture reports, or ``None``.
    """

    def __init__(
        self, kind: SourceKind, name: str, opener: Callable[[], Any], *, loop: bool = False
    ) -> None:
        """Open the capture.

        Args:
            kind: ``video`` (a file: reopened for each pass) or ``camera`` (live).
            name: What is read, for messages (a path, ``camera:0``, a redacted URL).
            opener: Returns a new ``cv2.VideoCapture`` (or an object with its ``isOpened``,
                ``read``, ``get`` and ``release`` methods).
            loop: Start a video over at its end (ignored for cameras).

        Raises:
            InvalidInputError: if a video file cannot be opened.
            BackendError: if a camera or stream cannot be opened.
        """
        self._opener = opener
        self._live = kind == "camera"
        self._cap: Any = None
        self._cap = self._open(name)
        import cv2

        count = self._prop(cv2.CAP_PROP_FRAME_COUNT)
        self.frames_announced = int(count) if count and count > 0 and not self._live else None
        fps = self._prop(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < _MAX_PLAUSIBLE_FPS else None
        width, height = self._prop(cv2.CAP_PROP_FRAME_WIDTH), self._prop(cv2.CAP_PROP_FRAME_HEIGHT)
        self.frame_size = (int(width), int(height)) if width and height else None
        super().__init__(kind, name, total=self.frames_announced, loop=loop)
        if self.fps:
            self._period_hint = 1.0 / self.fps
        self._fresh = True

    def _open(self, name: str) -> Any:  # noqa: ANN401 (a cv2.VideoCapture)
        import cv2

        try:
            cap = self._opener()
            opened = cap is not None and bool(cap.isOpened())
        except cv2.error as err:
            cap, opened = None, False
            reason = str(err).strip()
        else:
            reason = ""
        if not opened:
            if cap is not None:
                cap.release()
            detail = f": {reason}" if reason else ""
            if self._live:
                msg = (
                    f"{name}: OpenCV cannot open this camera or stream (no such device, busy, "
                    f"no permission, unreachable or unsupported){detail}"
                )
                raise BackendError(msg)
            msg = (
                f"{name}: OpenCV cannot open this file as a video (not a video, or a codec "
                f"this build lacks){detail}"
            )
            raise InvalidInputError(msg)
        return cap

    def _prop(self, prop: int) -> float | None:
        try:
            value = float(self._cap.get(prop))
        except Exception:  # noqa: BLE001 (a capture property is a hint; any failure means none)
            return None
        return value if math.isfinite(value) else None

    def _stamp(self, position: int) -> float | None:
        if self._live:
            return time.time()
        import cv2

        msec = self._prop(cv2.CAP_PROP_POS_MSEC)
        if msec is not None and (msec > 0 or position == 0):
            return msec / 1000.0
        return position / self.fps if self.fps else None

    def _pass(self, number: int) -> Iterator[_Read]:
        import cv2

        del number
        if not self._fresh and not self._live:
            self._cap.release()
            self._cap = None
            self._cap = self._open(self.name)
        self._fresh = False
        attempts = 0
        pending: list[str] = []
        last_good = time.monotonic()
        while not self._closed:
            reason = "cannot read or decode the frame"
            try:
                ok, image = self._cap.read()
            except cv2.error as err:
                ok, image = False, None
                reason = f"OpenCV error: {str(err).strip()}"
            position = attempts
            attempts += 1
            if ok and image is not None:
                for why in pending:
                    yield _Read(self.name, error=why)
                pending.clear()
                last_good = time.monotonic()
                yield _Read(self.name, array=image, timestamp=self._stamp(position))
                continue
            announced = self.frames_announced
            if not self._live and (announced is None or attempts > announced):
                if pending:
                    self._note(
                        f"{self.name}: video ended after {position - len(pending)} "
                        f"frames; its header announces {announced}"
                    )
                return
            pending.append(reason)
            stalled = self._live and time.monotonic() - last_good > LIVE_STALL_SECONDS
            if len(pending) >= MAX_CONSECUTIVE_FAILURES or stalled:
                self._note(
                    f"{self.name}: stopped after {len(pending)} failed reads in a row "
                    f"(frames {position + 1 - len(pending)}..{position})"
                )
                return

    def _describe(self) -> str:
        size = f"{self.frame_size[0]}x{self.frame_size[1]}" if self.frame_size else "size unknown"
        if self._live:
            return f"camera {self.name} ({size})"
        frames = (
            f"{self.frames_announced} frames"
            if self.frames_announced is not None
            else "frame count unknown"
        )
        rate = f" at {self.fps:.3g} fps" if self.fps else ""
        return f"video {self.name} ({size}, {frames}{rate})"

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def open_video(path: Path, *, loop: bool = False) -> CaptureSource:
    """A video file read with OpenCV (FFmpeg), kind ``video``.

    Raises:
        InvalidInputError: if OpenCV cannot open the file as a video.
    """
    import cv2

    return CaptureSource(
        "video", str(path), lambda: cv2.VideoCapture(str(path), cv2.CAP_ANY), loop=loop
    )


def open_camera(target: int | str, *, api: str = "any") -> CaptureSource:
    """A camera (OpenCV index or device path), stream URL or GStreamer pipeline, kind ``camera``.

    Args:
        target: A camera index, a device path such as ``/dev/video0``, a stream URL or a
            GStreamer pipeline ending in ``appsink``.
        api: ``any`` (OpenCV picks), ``v4l2`` (device paths), ``gstreamer`` (pipelines) or
            ``stream`` (URLs: FFmpeg or GStreamer with open and read timeouts of
            :data:`STREAM_TIMEOUT_MS`).

    Raises:
        BackendError: if OpenCV cannot open it.
    """
    import cv2

    if isinstance(target, int):
        name = f"camera:{target}"
    else:
        name = redact_url(target) if api == "stream" else target

    def opener() -> Any:  # noqa: ANN401 (a cv2.VideoCapture)
        if api == "v4l2":
            return cv2.VideoCapture(target, cv2.CAP_V4L2)
        if api == "gstreamer":
            return cv2.VideoCapture(target, cv2.CAP_GSTREAMER)
        if api == "stream":
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
            ]
            return cv2.VideoCapture(target, cv2.CAP_ANY, params)
        return cv2.VideoCapture(target, cv2.CAP_ANY)

    return CaptureSource("camera", name, opener)
