"""OpenCV captures: failed reads in the middle of a video, cameras that stop, opening errors.

No real camera or network is used: a scripted stand-in for ``cv2.VideoCapture`` drives the
read logic, and the opening errors use a camera index that does not exist or a patched
``VideoCapture``.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from rap_edge.errors import BackendError, RapEdgeError
from rap_edge.sources import (
    MAX_CONSECUTIVE_FAILURES,
    CaptureSource,
    open_camera,
    open_source,
    redact_url,
)
from rap_edge.sources import _capture as capture_module


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


def test_camera_skips_dropouts_and_stops_when_it_goes_away() -> None:
    script = [img(0), None, img(2)]  # then fails forever
    cap = ScriptedCapture(script)
    src = CaptureSource("camera", "camera:7", lambda: cap, loop=True)
    assert (src.kind, src.total, src.loop) == ("camera", None, False)
    before = time.time()
    frames = list(src)
    assert [f.index for f in frames] == [0, 2]
    assert all(before <= f.timestamp <= time.time() for f in frames)
    assert frames[0].source == "camera:7"
    assert src.skipped == 1
    assert "stopped after" in src.errors[-1]
    assert "camera camera:7 (4x4)" in src.describe()


def test_capture_that_does_not_open_is_released_and_reported() -> None:
    cap = ScriptedCapture([], opened=False)
    with pytest.raises(BackendError, match="camera:3: OpenCV cannot open"):
        CaptureSource("camera", "camera:3", lambda: cap)
    assert cap.released


def test_nonexistent_camera_index_fails_fast_with_a_clear_error() -> None:
    outcome: list[BaseException | object] = []

    def attempt() -> None:
        try:
            outcome.append(open_source("99"))
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
        open_source(url)
    assert "hunter2" not in str(info.value)
    assert "rtsp://admin:***@192.0.2.1:554/live" in str(info.value)
    (args,) = calls
    assert args[0] == url
    params = args[2]
    assert cv2.CAP_PROP_OPEN_TIMEOUT_MSEC in params
    assert cv2.CAP_PROP_READ_TIMEOUT_MSEC in params


def test_opened_stream_reads_frames(monkeypatch) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", lambda *_: ScriptedCapture([img(5), img(6)]))
    monkeypatch.setattr(capture_module, "LIVE_STALL_SECONDS", 0.0)
    with open_source("http://cam.local/video.mjpg") as src:
        assert src.kind == "camera"
        frames = list(src)
    assert [f.source for f in frames] == ["http://cam.local/video.mjpg"] * 2


def test_open_camera_by_index_uses_the_index(monkeypatch) -> None:
    seen: list[tuple] = []

    def fake_capture(*args):
        seen.append(args)
        return ScriptedCapture([img(1)])

    monkeypatch.setattr(cv2, "VideoCapture", fake_capture)
    with open_camera(2) as src:
        assert src.name == "camera:2"
        assert [f.source for f in src] == ["camera:2"]
    assert seen[0][0] == 2


def test_redact_url() -> None:
    assert redact_url("rtsp://u:p@h/x") == "rtsp://u:***@h/x"
    assert redact_url("rtsp://h:554/x") == "rtsp://h:554/x"
    assert redact_url("http://[::1]:80/x") == "http://[::1]:80/x"
    assert redact_url("http://u:p@[::1]:80/x?a=1") == "http://u:***@[::1]:80/x?a=1"
    assert redact_url("udp://@:5000") == "udp://@:5000"
