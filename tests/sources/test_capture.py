"""OpenCV captures: failed reads in a video, cameras that drop, stall and come back, errors.

A scripted stand-in for ``cv2.VideoCapture`` drives the read logic; the opening errors use a
camera index that does not exist or a patched ``VideoCapture``. The reconnection tests read a
real MJPEG-over-HTTP stream that the test serves on 127.0.0.1 (nothing else is reached), kill
and restart it, or pause it, while OpenCV (FFmpeg) reads it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.errors import BackendError, InvalidInputError, RapEdgeError
from rap_edge.sources import (
    MAX_CONSECUTIVE_FAILURES,
    CaptureSource,
    Frame,
    Gap,
    ReconnectPolicy,
    open_camera,
    open_source,
    redact_url,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class ScriptedCapture:
    """Plays a script: an image for a good read, None for a failed one, then fails forever."""

    def __init__(
        self,
        script: list[np.ndarray | None],
        count: float = 0.0,
        fps: float = 0.0,
        opened: bool = True,
    ) -> None:
        self.script = list(script)
        self.count = count
        self.fps = fps
        self.opened = opened
        self.pos = 0
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        item = self.script[self.pos] if self.pos < len(self.script) else None
        self.pos += 1
        return (item is not None), item

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return self.count
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_POS_MSEC:
            return 0.0
        if prop in {cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT}:
            return 4.0
        return 0.0

    def release(self) -> None:
        self.released = True


def img(v: int) -> np.ndarray:
    return np.full((4, 4, 3), v, np.uint8)


def test_failed_reads_in_the_middle_of_a_video_are_skipped() -> None:
    script = [img(0), img(1), None, None, img(4), None, img(6)]
    cap = ScriptedCapture(script, count=7, fps=10.0)
    src = CaptureSource("video", "fake.avi", lambda: cap)
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 4, 6]
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 4, 6]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.4, 0.6])
    assert src.skipped == 3
    assert src.errors == [
        "frame 2 (fake.avi): cannot read or decode the frame",
        "frame 3 (fake.avi): cannot read or decode the frame",
        "frame 5 (fake.avi): cannot read or decode the frame",
    ]
    src.close()
    assert cap.released


def test_video_shorter_than_its_header_is_not_counted_as_skipped() -> None:
    cap = ScriptedCapture([img(0), img(1), img(2)], count=5)
    src = CaptureSource("video", "short.avi", lambda: cap)
    assert src.total == 5
    assert len(list(src)) == 3
    assert src.skipped == 0
    assert src.errors == ["short.avi: video ended after 3 frames; its header announces 5"]


def test_video_without_frame_count_ends_at_first_failure() -> None:
    cap = ScriptedCapture([img(0), None, img(2)], count=0)
    src = CaptureSource("video", "nocount.avi", lambda: cap)
    assert src.total is None
    assert len(list(src)) == 1
    assert src.skipped == 0


def test_too_many_failures_in_a_row_end_the_video() -> None:
    script = [img(0)] + [None] * (MAX_CONSECUTIVE_FAILURES + 5) + [img(1)]
    cap = ScriptedCapture(script, count=len(script))
    src = CaptureSource("video", "broken.avi", lambda: cap)
    assert len(list(src)) == 1
    assert src.skipped == 0
    assert "failed reads in a row" in src.errors[-1]


def test_camera_skips_dropouts_reconnects_and_gives_up_when_it_stays_away() -> None:
    script = [img(0), None, img(2)]  # then fails forever
    cap = ScriptedCapture(script)
    opened: list[float] = []

    def opener() -> ScriptedCapture:
        opened.append(time.monotonic())
        return cap

    policy = ReconnectPolicy(backoff_initial=0.05, backoff_max=0.1, give_up_after=0.5)
    before = time.time()  # a camera is read from the moment it opens
    src = CaptureSource("camera", "camera:7", opener, loop=True, policy=policy)
    assert (src.kind, src.total, src.loop) == ("camera", None, False)
    frames = list(src)
    assert [f.index for f in frames] == [0, 2]
    assert all(before <= f.timestamp <= time.time() for f in frames)
    assert frames[0].source == "camera:7"
    assert src.skipped == 1
    assert src.drops == 1
    assert src.reconnects == 0  # no frame came back
    assert len(opened) >= 3  # the first open, then reconnection attempts with backoff
    assert "stream lost (25 failed reads in a row" in src.errors[-2]
    assert src.errors[-1].startswith("camera:7: gave up after ")
    assert "camera camera:7 (4x4), lost 1 time(s)" in src.describe()
    src.close()
    assert cap.released


def test_camera_that_comes_back_after_failing_is_a_counted_gap() -> None:
    caps = [ScriptedCapture([img(1), img(2)]), ScriptedCapture([img(3), img(4)])]
    opens: list[ScriptedCapture] = []

    def opener() -> ScriptedCapture:
        opens.append(caps[min(len(opens), 1)])
        return opens[-1]

    policy = ReconnectPolicy(backoff_initial=0.05, give_up_after=0.5)
    gaps = []
    with CaptureSource("camera", "camera:5", opener, policy=policy) as src:
        src.on_gap = gaps.append
        values = [int(f.image[0, 0, 0]) for f in src]
    assert values == [1, 2, 3, 4]
    assert src.drops == 2 and src.reconnects == 1  # lost, back, lost for good
    assert gaps == src.gaps
    (gap,) = gaps
    assert gap.source == "camera:5"
    assert gap.attempts == 1
    assert gap.reason.startswith("25 failed reads in a row")
    assert 0.05 <= gap.seconds == pytest.approx(gap.end - gap.start)
    assert src.gap_seconds == pytest.approx(gap.seconds)
    assert gap.to_json()["event"] == "gap"


def test_a_stalled_read_is_abandoned_after_the_read_timeout() -> None:
    release = threading.Event()

    class Stalling(ScriptedCapture):
        def read(self) -> tuple[bool, np.ndarray | None]:
            if self.pos >= 2:
                release.wait(30)  # a read that never returns (until the test ends)
            return super().read()

    caps = [Stalling([img(1), img(2)]), ScriptedCapture([img(9)])]
    policy = ReconnectPolicy(read_timeout=0.3, backoff_initial=0.05, give_up_after=0.5)
    src = CaptureSource("camera", "camera:6", lambda: caps.pop(0), policy=policy)
    start = time.monotonic()
    try:
        values = [int(f.image[0, 0, 0]) for f in src]
        assert values == [1, 2, 9]
        assert time.monotonic() - start < 10
        assert src.gaps[0].reason == "no frame for 0.3 s"
    finally:
        release.set()
        src.close()


def test_reconnect_policy_refuses_bad_values() -> None:
    with pytest.raises(InvalidInputError, match="read_timeout must be a positive number"):
        ReconnectPolicy(read_timeout=0)
    with pytest.raises(InvalidInputError, match="give_up_after must be a positive number"):
        ReconnectPolicy(give_up_after=float("inf"))
    with pytest.raises(InvalidInputError, match="backoff_max .* at least backoff_initial"):
        ReconnectPolicy(backoff_initial=5, backoff_max=1)


def test_capture_that_does_not_open_is_released_and_reported() -> None:
    caps: list[ScriptedCapture] = []

    def opener() -> ScriptedCapture:
        caps.append(ScriptedCapture([], opened=False))
        return caps[-1]

    policy = ReconnectPolicy(connect_timeout=0.5, backoff_initial=0.1)
    start = time.monotonic()
    with pytest.raises(BackendError, match="camera:3: OpenCV cannot open") as info:
        CaptureSource("camera", "camera:3", opener, policy=policy)
    assert 0.5 <= time.monotonic() - start < 5
    assert "gave up after" in str(info.value)
    assert "(connect timeout 0.5 s)" in str(info.value)
    assert len(caps) >= 3  # retried with backoff
    assert all(cap.released for cap in caps)


def test_nonexistent_camera_index_fails_fast_with_a_clear_error() -> None:
    outcome: list[BaseException | object] = []

    def attempt() -> None:
        try:
            outcome.append(open_source("99", policy=ReconnectPolicy(connect_timeout=2.0)))
        except BaseException as err:  # noqa: BLE001
            outcome.append(err)

    worker = threading.Thread(target=attempt, daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "opening camera 99 hung"
    assert time.monotonic() - start < 20
    (result,) = outcome
    if not isinstance(result, BaseException):  # a machine with 100 cameras
        result.close()  # type: ignore[attr-defined]
        pytest.skip("camera 99 exists here")
    assert isinstance(result, BackendError)
    assert "camera:99" in str(result)
    assert isinstance(result, RapEdgeError)
    assert result.exit_code == 2


def test_stream_url_gets_timeouts_and_a_redacted_name(monkeypatch) -> None:
    calls: list[tuple] = []

    def fake_capture(*args):
        calls.append(args)
        return ScriptedCapture([], opened=False)

    monkeypatch.setattr(cv2, "VideoCapture", fake_capture)
    url = "rtsp://admin:hunter2@192.0.2.1:554/live"
    with pytest.raises(BackendError) as info:
        open_source(url, policy=ReconnectPolicy(connect_timeout=0.3, backoff_initial=0.1))
    assert "hunter2" not in str(info.value)
    assert "rtsp://admin:***@192.0.2.1:554/live" in str(info.value)
    assert len(calls) >= 2  # retried until the connect timeout
    args = calls[0]
    assert args[0] == url
    params = args[2]
    assert cv2.CAP_PROP_OPEN_TIMEOUT_MSEC in params
    assert cv2.CAP_PROP_READ_TIMEOUT_MSEC in params


def test_opened_stream_reads_frames(monkeypatch) -> None:
    caps = [ScriptedCapture([img(5), img(6)])]  # then it never opens again
    monkeypatch.setattr(cv2, "VideoCapture", lambda *_: caps.pop() if caps else None)
    policy = ReconnectPolicy(backoff_initial=0.05, give_up_after=0.2)
    with open_source("http://cam.local/video.mjpg", policy=policy) as src:
        assert src.kind == "camera"
        frames = list(src)
    assert [f.source for f in frames] == ["http://cam.local/video.mjpg"] * 2


def test_open_camera_by_index_uses_the_index(monkeypatch) -> None:
    seen: list[tuple] = []

    def fake_capture(*args):
        seen.append(args)
        return ScriptedCapture([img(1)], opened=len(seen) == 1)

    monkeypatch.setattr(cv2, "VideoCapture", fake_capture)
    with open_camera(2, policy=ReconnectPolicy(backoff_initial=0.05, give_up_after=0.1)) as src:
        assert src.name == "camera:2"
        assert [f.source for f in src] == ["camera:2"]
    assert seen[0][0] == 2


def test_redact_url() -> None:
    assert redact_url("rtsp://u:p@h/x") == "rtsp://u:***@h/x"
    assert redact_url("rtsp://h:554/x") == "rtsp://h:554/x"
    assert redact_url("http://[::1]:80/x") == "http://[::1]:80/x"
    assert redact_url("http://u:p@[::1]:80/x?a=1") == "http://u:***@[::1]:80/x?a=1"
    assert redact_url("udp://@:5000") == "udp://@:5000"


# -- a real stream on 127.0.0.1 -------------------------------------------------------------------

STREAM_DEADLINE_S = 45.0  # every wait in the stream tests ends by then


class MjpegServer:
    """An MJPEG-over-HTTP server on 127.0.0.1 that can be killed, restarted and paused.

    Each frame is a flat grey JPEG of ``value``, so a reader can tell which run served it.
    """

    def __init__(self) -> None:
        self.port = 0
        self.value = 0
        self.paused = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self, value: int) -> None:
        self.value = value
        ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), value, np.uint8))
        assert ok
        part = (
            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
            + jpeg.tobytes()
            + b"\r\n"
        )
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with outer._lock:
                    outer._conns.append(self.connection)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                with contextlib.suppress(OSError):
                    while True:
                        if not outer.paused.is_set():
                            self.wfile.write(part)
                            self.wfile.flush()
                        time.sleep(0.04)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def kill(self) -> None:
        """Stop listening and cut every open connection (as a camera that dies)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def mjpeg() -> Iterator[MjpegServer]:
    server = MjpegServer()
    yield server
    server.paused.clear()
    server.kill()


def _when(condition: Callable[[], bool], then: Callable[[], None]) -> threading.Thread:
    """Run ``then`` in a thread as soon as ``condition`` holds (polled; bounded in time)."""

    def watch() -> None:
        end = time.monotonic() + STREAM_DEADLINE_S
        while not condition():
            if time.monotonic() > end:
                return
            time.sleep(0.02)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _grey(frame: Frame) -> int:
    return round(float(frame.image.mean()))


def _read_until(
    frames: Iterator[Frame], value: int, after: Callable[[], bool] = lambda: True
) -> list[int]:
    """Read frames (grey levels) until one of ``value`` (JPEG: within 3) read once ``after``
    holds; bounded in time."""
    seen: list[int] = []
    end = time.monotonic() + STREAM_DEADLINE_S
    for frame in frames:
        seen.append(_grey(frame))
        if abs(seen[-1] - value) <= 3 and after():
            return seen
        assert time.monotonic() < end, f"no frame of {value} in {STREAM_DEADLINE_S} s: {seen}"
    pytest.fail(f"the source ended before a frame of {value}: {seen}")


def test_real_stream_killed_and_restarted_resumes_and_the_gap_is_counted(
    mjpeg: MjpegServer,
) -> None:
    mjpeg.start(value=60)
    policy = ReconnectPolicy(
        connect_timeout=5, read_timeout=2, backoff_initial=0.2, backoff_max=1, give_up_after=30
    )
    gaps: list[Gap] = []
    with open_source(mjpeg.url, policy=policy) as src:
        assert src.kind == "camera"
        assert isinstance(src, CaptureSource)
        src.on_gap = gaps.append
        frames = iter(src)
        _read_until(frames, 60)
        assert (src.drops, src.reconnects) == (0, 0)
        killed = time.time()
        mjpeg.kill()
        # Served again on the same port once the source has noticed the loss.
        restart = _when(lambda: src.drops >= 1, lambda: mjpeg.start(value=200))
        seen = _read_until(frames, 200)
        restart.join(STREAM_DEADLINE_S)
        assert src.drops == 1
        assert src.reconnects == 1
        assert [abs(v - 60) <= 3 for v in seen[:-1]] == [True] * (len(seen) - 1)
        (gap,) = gaps
        assert src.gaps == gaps
        assert gap.source == mjpeg.url
        assert gap.attempts >= 1
        assert gap.start <= killed + 0.5 < gap.end  # the last frame before it, the first after
        assert gap.seconds > 0
        assert src.gap_seconds == pytest.approx(gap.seconds)
        assert "stream lost" in src.errors[-2]
        assert "frames again after a gap of" in src.errors[-1]
        assert len(_read_until(frames, 200)) == 1  # and it keeps streaming


def test_real_stream_that_stalls_is_dropped_after_the_read_timeout_and_resumes(
    mjpeg: MjpegServer,
) -> None:
    mjpeg.start(value=90)
    policy = ReconnectPolicy(
        connect_timeout=1, read_timeout=1, backoff_initial=0.2, backoff_max=1, give_up_after=30
    )
    with open_source(mjpeg.url, policy=policy) as src:
        assert isinstance(src, CaptureSource)
        frames = iter(src)
        _read_until(frames, 90)
        mjpeg.paused.set()  # the connection stays open, nothing more comes
        resume = _when(lambda: src.drops >= 1, mjpeg.paused.clear)
        start = time.monotonic()
        # Frames buffered before the pause are read first; then the stall is noticed.
        _read_until(frames, 90, after=lambda: src.reconnects >= 1)
        resume.join(STREAM_DEADLINE_S)
        assert src.drops == 1, src.errors
        assert src.reconnects == 1
        assert src.gaps[0].reason == "no frame for 1 s"
        assert time.monotonic() - start < STREAM_DEADLINE_S


def test_a_stream_that_never_appears_fails_with_a_clear_message() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    start = time.monotonic()
    with pytest.raises(BackendError) as info:
        open_source(url, policy=ReconnectPolicy(connect_timeout=1.0, backoff_initial=0.2))
    assert 1.0 <= time.monotonic() - start < 10
    message = str(info.value)
    assert message.startswith(f"{url}: OpenCV cannot open this camera or stream")
    assert "(connect timeout 1 s)" in message
