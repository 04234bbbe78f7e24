"""Video files, cameras and network streams read through OpenCV's ``VideoCapture``.

A read that fails is not always a bad frame: at the end of a video or when a camera goes away
every read fails. So failed reads are held back and counted as skipped frames only when a good
frame follows them.

**Videos.** A video ends at the first failed read once the frame count its header announces is
reached (or at once when it announces none); before that, after
:data:`MAX_CONSECUTIVE_FAILURES` failed reads in a row. An early end is noted in ``errors``.

**Cameras, streams and GStreamer pipelines survive.** Each connection is read by a thread of
its own, and the iterator waits for its next frame at most ``read_timeout`` seconds (see
:class:`ReconnectPolicy`), so a stream that stalls is noticed instead of waited on forever.
A stall, or :data:`MAX_CONSECUTIVE_FAILURES` failed reads in a row, drops the connection (its
thread releases the capture when its current call returns) and the source reconnects with
exponential backoff (0.5 s, 1 s, 2 s, ... capped at 30 s by default) until frames flow
again, or until ``give_up_after`` seconds of outage when that is set. Each outage is
reported: a warning on the ``rap_edge.sources`` logger when it starts and when it ends, a
note in ``errors``, a :class:`Gap` in ``gaps`` (with ``drops``, ``reconnects`` and
``gap_seconds`` counting them) and a call of ``on_gap`` (``rap-edge run`` writes it to its
JSONL). A camera or stream that cannot be opened at all is retried the same way for
``connect_timeout`` seconds, then fails with :class:`~rap_edge.errors.BackendError`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from rap_edge.errors import BackendError, InvalidInputError
from rap_edge.sources._base import MAX_ERRORS, FrameSource, SourceKind, _Read

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import numpy.typing as npt

__all__ = [
    "LIVE_STALL_SECONDS",
    "MAX_CONSECUTIVE_FAILURES",
    "STREAM_TIMEOUT_MS",
    "CaptureSource",
    "Gap",
    "ReconnectPolicy",
    "open_camera",
    "open_video",
    "redact_url",
]

log = logging.getLogger("rap_edge.sources")

_MAX_PLAUSIBLE_FPS = 10_000.0

MAX_CONSECUTIVE_FAILURES = 25
"""Failed reads in a row after which a video ends, or a camera or stream reconnects."""

LIVE_STALL_SECONDS = 10.0
"""Default read timeout: a camera or stream that delivers no frame for this long has stalled."""

STREAM_TIMEOUT_MS = 10_000
"""Open and read timeouts given to OpenCV for network streams (FFmpeg and GStreamer honour
them), so that an unreachable or silent stream fails instead of hanging."""

_JOIN_SECONDS = 2.0  # close(): how long to wait for the reader thread to release the capture


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How a camera or stream waits, reconnects and gives up (all in seconds).

    Attributes:
        connect_timeout: A camera or stream that cannot be opened is retried (with backoff)
            for this long, then fails with a clear message.
        read_timeout: No frame for this long is a stall: the connection is dropped and made
            again.
        backoff_initial: The wait before the first reconnection attempt; doubled after each
            failed attempt.
        backoff_max: The longest wait between attempts.
        give_up_after: An outage longer than this ends the iteration (noted in ``errors``);
            ``None`` reconnects for as long as the source is open.

    Raises:
        InvalidInputError: if a value is not a positive finite number (``backoff_max`` below
            ``backoff_initial`` included).
    """

    connect_timeout: float = 10.0
    read_timeout: float = LIVE_STALL_SECONDS
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    give_up_after: float | None = None

    def __post_init__(self) -> None:
        """Check the values."""
        for field in ("connect_timeout", "read_timeout", "backoff_initial", "backoff_max"):
            _check_seconds(field, getattr(self, field))
        if self.give_up_after is not None:
            _check_seconds("give_up_after", self.give_up_after)
        if self.backoff_max < self.backoff_initial:
            msg = (
                f"backoff_max ({self.backoff_max:g} s) must be at least backoff_initial "
                f"({self.backoff_initial:g} s)"
            )
            raise InvalidInputError(msg)


def _check_seconds(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        msg = f"{name} must be a positive number of seconds, got {value!r}"
        raise InvalidInputError(msg)


@dataclass(frozen=True, slots=True)
class Gap:
    """One outage of a camera or stream, from the lost connection to the next frame.

    Attributes:
        source: The source's name.
        start: Wall-clock time (``time.time()``) of the last frame before the outage was
            noticed, or of the moment it was noticed when no frame had arrived yet.
        end: Wall-clock time of the first frame after it.
        seconds: ``end - start``.
        reason: Why the connection was dropped (a stall, failed reads).
        attempts: Reconnection attempts it took.
    """

    source: str
    start: float
    end: float
    seconds: float
    reason: str
    attempts: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``event: gap`` line of ``rap-edge run --jsonl``)."""
        return {
            "event": "gap",
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
            "attempts": self.attempts,
        }


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


def _capture_props(cap: Any) -> dict[str, float | None]:  # noqa: ANN401 (a cv2.VideoCapture)
    import cv2

    def prop(which: int) -> float | None:
        try:
            value = float(cap.get(which))
        except Exception:  # noqa: BLE001 (a capture property is a hint; any failure means none)
            return None
        return value if math.isfinite(value) else None

    return {
        "count": prop(cv2.CAP_PROP_FRAME_COUNT),
        "fps": prop(cv2.CAP_PROP_FPS),
        "width": prop(cv2.CAP_PROP_FRAME_WIDTH),
        "height": prop(cv2.CAP_PROP_FRAME_HEIGHT),
    }


def _open_capture(opener: Callable[[], Any]) -> tuple[Any, str]:
    """Call ``opener``; return (the open capture or None, the reason it is not open)."""
    import cv2

    cap = None
    try:
        cap = opener()
        if cap is not None and bool(cap.isOpened()):
            return cap, ""
        reason = ""
    except cv2.error as err:
        reason = str(err).strip()
    except Exception as err:  # noqa: BLE001 (a backend's own failure is this attempt's reason)
        reason = f"{type(err).__name__}: {err}"
    if cap is not None:
        cap.release()
    return None, reason


class _Item(NamedTuple):
    image: npt.NDArray[Any] | None
    stamp: float
    reason: str


class _Reader:
    """One connection to a camera or stream: a thread that opens it and reads frames.

    The thread owns the capture: it opens it, reads into a small queue and releases it when
    told to stop (after its current call returns, however long that blocks).
    """

    def __init__(self, opener: Callable[[], Any], name: str) -> None:
        self._opener = opener
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self.opened = threading.Event()  # set once the open attempt has finished
        self.open_error: str | None = None
        self.props: dict[str, float | None] = {}
        self.thread = threading.Thread(target=self._run, name=f"capture {name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import cv2

        cap, reason = _open_capture(self._opener)
        if cap is None:
            self.open_error = reason
            self.opened.set()
            return
        try:
            self.props = _capture_props(cap)
            self.opened.set()
            while not self._stop.is_set():
                reason = "cannot read or decode the frame"
                try:
                    ok, image = cap.read()
                except cv2.error as err:
                    ok, image = False, None
                    reason = f"OpenCV error: {str(err).strip()}"
                item = _Item(image if ok and image is not None else None, time.time(), reason)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        finally:
            cap.release()

    def wait_open(self, timeout: float) -> bool:
        """Whether the capture opened within ``timeout`` seconds (``open_error`` says why not)."""
        if not self.opened.wait(timeout):
            self.open_error = f"opening did not finish in {timeout:g} s"
            return False
        return self.open_error is None

    def get(self, timeout: float) -> _Item | None:
        """The next read, or ``None`` when none came within ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self) -> None:
        """Ask the thread to release the capture and end (it does after its current call)."""
        self._stop.set()


class _Outage:
    """An outage in progress (see :class:`Gap`)."""

    def __init__(self, start: float, reason: str, delay: float) -> None:
        self.start = start
        self.started = time.monotonic()
        self.reason = reason
        self.delay = delay
        self.attempts = 0
        self.last_error = ""


class CaptureSource(FrameSource):
    """Frames from an OpenCV capture (kind ``video`` or ``camera``); see the module notes.

    Attributes:
        fps: Frames per second the capture reports, or ``None``.
        frame_size: (width, height) the capture reports, or ``None``.
        policy: How a camera or stream reconnects (:class:`ReconnectPolicy`).
        drops: Times a camera or stream was lost (stalled or failing).
        reconnects: Times frames flowed again after a loss.
        gap_seconds: Seconds without frames across the outages that ended.
        gaps: The most recent :data:`~rap_edge.sources.MAX_ERRORS` outages that ended.
        on_gap: Called (from the iterating thread) with each :class:`Gap` as it ends.
    """

    def __init__(
        self,
        kind: SourceKind,
        name: str,
        opener: Callable[[], Any],
        *,
        loop: bool = False,
        policy: ReconnectPolicy | None = None,
    ) -> None:
        """Open the capture.

        Args:
            kind: ``video`` (a file: reopened for each pass) or ``camera`` (live).
            name: What is read, for messages (a path, ``camera:0``, a redacted URL).
            opener: Returns a new ``cv2.VideoCapture`` (or an object with its ``isOpened``,
                ``read``, ``get`` and ``release`` methods).
            loop: Start a video over at its end (ignored for cameras).
            policy: Timeouts and backoff of a camera or stream (default
                :class:`ReconnectPolicy`'s); ignored for videos.

        Raises:
            InvalidInputError: if a video file cannot be opened.
            BackendError: if a camera or stream cannot be opened within
                ``policy.connect_timeout`` seconds.
        """
        self._opener = opener
        self._live = kind == "camera"
        self.policy = policy or ReconnectPolicy()
        self.drops = 0
        self.reconnects = 0
        self.gap_seconds = 0.0
        self.gaps: list[Gap] = []
        self.on_gap: Callable[[Gap], None] | None = None
        self._closing = threading.Event()
        self._cap: Any = None
        self._reader: _Reader | None = None
        if self._live:
            self._reader = self._connect_first(name)
            props = self._reader.props
        else:
            self._cap = self._open_video(name)
            props = _capture_props(self._cap)
        count = props.get("count")
        self.frames_announced = int(count) if count and count > 0 and not self._live else None
        fps = props.get("fps")
        self.fps = fps if fps and 0 < fps < _MAX_PLAUSIBLE_FPS else None
        width, height = props.get("width"), props.get("height")
        self.frame_size = (int(width), int(height)) if width and height else None
        super().__init__(kind, name, total=self.frames_announced, loop=loop)
        if self.fps:
            self._period_hint = 1.0 / self.fps
        self._fresh = True

    # -- videos ---------------------------------------------------------------------------------

    def _open_video(self, name: str) -> Any:  # noqa: ANN401 (a cv2.VideoCapture)
        cap, reason = _open_capture(self._opener)
        if cap is None:
            detail = f": {reason}" if reason else ""
            msg = (
                f"{name}: OpenCV cannot open this file as a video (not a video, or a codec "
                f"this build lacks){detail}"
            )
            raise InvalidInputError(msg)
        return cap

    def _stamp(self, position: int) -> float | None:
        import cv2

        try:
            msec: float | None = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        except Exception:  # noqa: BLE001 (a hint; any failure means none)
            msec = None
        if msec is not None and math.isfinite(msec) and (msec > 0 or position == 0):
            return msec / 1000.0
        return position / self.fps if self.fps else None

    def _video_pass(self) -> Iterator[_Read]:
        import cv2

        if not self._fresh:
            self._cap.release()
            self._cap = None
            self._cap = self._open_video(self.name)
        self._fresh = False
        attempts = 0
        pending: list[str] = []
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
                yield _Read(self.name, array=image, timestamp=self._stamp(position))
                continue
            announced = self.frames_announced
            if announced is None or attempts > announced:
                if pending:
                    self._note(
                        f"{self.name}: video ended after {position - len(pending)} "
                        f"frames; its header announces {announced}"
                    )
                return
            pending.append(reason)
            if len(pending) >= MAX_CONSECUTIVE_FAILURES:
                self._note(
                    f"{self.name}: stopped after {len(pending)} failed reads in a row "
                    f"(frames {position + 1 - len(pending)}..{position})"
                )
                return

    # -- cameras and streams --------------------------------------------------------------------

    def _attempt(self, name: str, wait: float) -> tuple[_Reader | None, str]:
        """One connection attempt: the reader once it has opened, or None and the reason."""
        reader = _Reader(self._opener, name)
        if reader.wait_open(wait):
            return reader, ""
        reader.stop()
        return None, reader.open_error or "unknown reason"

    def _connect_first(self, name: str) -> _Reader:
        policy = self.policy
        started = time.monotonic()
        delay = policy.backoff_initial
        attempts = 0
        while True:
            left = policy.connect_timeout - (time.monotonic() - started)
            attempts += 1
            reader, reason = self._attempt(name, max(left, 0.05))
            if reader is not None:
                return reader
            left = policy.connect_timeout - (time.monotonic() - started)
            if left <= 0 or self._closing.wait(min(delay, left)):
                break
            delay = min(delay * 2, policy.backoff_max)
        detail = f"; last: {reason}" if reason else ""
        msg = (
            f"{name}: OpenCV cannot open this camera or stream (no such device, busy, no "
            f"permission, unreachable or unsupported); gave up after "
            f"{time.monotonic() - started:.1f} s and {attempts} attempt(s) (connect timeout "
            f"{policy.connect_timeout:g} s){detail}"
        )
        raise BackendError(msg)

    def _lose(self, reader: _Reader, reason: str, last_frame: float | None) -> _Outage:
        reader.stop()
        self.drops += 1
        now = time.time()
        message = (
            f"{self.name}: stream lost ({reason}); reconnecting with backoff up to "
            f"{self.policy.backoff_max:g} s"
        )
        log.warning("%s", message)
        self._note(message)
        start = last_frame if last_frame is not None else now
        return _Outage(start, reason, self.policy.backoff_initial)

    def _recovered(self, outage: _Outage, stamp: float) -> None:
        gap = Gap(
            self.name,
            outage.start,
            stamp,
            max(stamp - outage.start, 0.0),
            outage.reason,
            outage.attempts,
        )
        self.reconnects += 1
        self.gap_seconds += gap.seconds
        self.gaps.append(gap)
        if len(self.gaps) > MAX_ERRORS:
            del self.gaps[: len(self.gaps) - MAX_ERRORS]
        message = (
            f"{self.name}: frames again after a gap of {gap.seconds:.1f} s "
            f"({gap.attempts} reconnection attempt(s))"
        )
        log.warning("%s", message)
        self._note(message)
        if self.on_gap is not None:
            self.on_gap(gap)

    def _live_pass(self) -> Iterator[_Read]:
        policy = self.policy
        reader = self._reader
        outage: _Outage | None = None
        last_frame: float | None = None
        pending: list[str] = []
        while not self._closed:
            if reader is None:
                assert outage is not None  # noqa: S101 (a reader is dropped only with an outage)
                waited = time.monotonic() - outage.started
                if policy.give_up_after is not None and waited >= policy.give_up_after:
                    last = f"; last attempt: {outage.last_error}" if outage.last_error else ""
                    self._note(
                        f"{self.name}: gave up after {waited:.1f} s without frames and "
                        f"{outage.attempts} reconnection attempt(s){last}"
                    )
                    return
                wait = outage.delay
                if policy.give_up_after is not None:
                    wait = min(wait, max(policy.give_up_after - waited, 0.0))
                if self._closing.wait(wait):
                    return
                outage.delay = min(outage.delay * 2, policy.backoff_max)
                outage.attempts += 1
                reader, outage.last_error = self._attempt(self.name, policy.connect_timeout)
                self._reader = reader
                continue
            item = reader.get(policy.read_timeout)
            if self._closing.is_set():
                return
            if item is not None and item.image is not None:
                if outage is not None:
                    self._recovered(outage, item.stamp)
                    outage = None
                for why in pending:
                    yield _Read(self.name, error=why)
                pending.clear()
                last_frame = item.stamp
                yield _Read(self.name, array=item.image, timestamp=item.stamp)
                continue
            if item is None:
                reason = f"no frame for {policy.read_timeout:g} s"
            else:
                pending.append(item.reason)
                if len(pending) < MAX_CONSECUTIVE_FAILURES:
                    continue
                reason = f"{len(pending)} failed reads in a row: {pending[-1]}"
            pending.clear()
            if outage is None:
                outage = self._lose(reader, reason, last_frame)
            else:  # reconnected, but no frame came: the same outage goes on
                reader.stop()
            reader = self._reader = None

    # -- shared ---------------------------------------------------------------------------------

    def _pass(self, number: int) -> Iterator[_Read]:
        del number
        if self._live:
            return self._live_pass()
        return self._video_pass()

    def _describe(self) -> str:
        size = f"{self.frame_size[0]}x{self.frame_size[1]}" if self.frame_size else "size unknown"
        if self._live:
            text = f"camera {self.name} ({size})"
            if self.drops:
                text += (
                    f", lost {self.drops} time(s), {self.gap_seconds:.1f} s without frames so far"
                )
            return text
        frames = (
            f"{self.frames_announced} frames"
            if self.frames_announced is not None
            else "frame count unknown"
        )
        rate = f" at {self.fps:.3g} fps" if self.fps else ""
        return f"video {self.name} ({size}, {frames}{rate})"

    def _close(self) -> None:
        self._closing.set()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()
            reader.thread.join(_JOIN_SECONDS)
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


def open_camera(
    target: int | str, *, api: str = "any", policy: ReconnectPolicy | None = None
) -> CaptureSource:
    """A camera (OpenCV index or device path), stream URL or GStreamer pipeline, kind ``camera``.

    Args:
        target: A camera index, a device path such as ``/dev/video0``, a stream URL or a
            GStreamer pipeline ending in ``appsink``.
        api: ``any`` (OpenCV picks), ``v4l2`` (device paths), ``gstreamer`` (pipelines) or
            ``stream`` (URLs: FFmpeg or GStreamer with open and read timeouts of
            :data:`STREAM_TIMEOUT_MS`).
        policy: Timeouts and reconnection backoff (default :class:`ReconnectPolicy`'s).

    Raises:
        BackendError: if OpenCV cannot open it within ``policy.connect_timeout`` seconds.
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

    return CaptureSource("camera", name, opener, policy=policy)
