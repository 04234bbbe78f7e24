"""The levels of /diagnostics (rap_edge_ros.diagnostics: pure Python, no ROS needed)."""

from __future__ import annotations

import pytest
from rap_edge_ros.diagnostics import (
    ERROR,
    MAX_QUEUE_P99_MS,
    NO_FRAMES_ERROR_S,
    OK,
    WARN,
    Diagnostics,
)

from rap_edge.live import LiveStats, SourceStats, _percentile

TOPIC = "/cam/image_raw"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stats(  # noqa: PLR0913 - the counters a case sets
    received: int,
    processed: int,
    *,
    since: float | None = 0.1,
    p99: float | None = 20.0,
    errors: int = 0,
    dropped: int = 0,
    failed_descriptions: int = 0,
) -> LiveStats:
    src = SourceStats(
        received=received,
        processed=processed,
        dropped=dropped,
        errors=errors,
        last_errors=(),
        last_frame=processed - 1 if processed else None,
        last_ms=10.0,
        since_received_s=since,
        queue_wait_p50_ms=None if p99 is None else p99 / 2,
        queue_wait_p99_ms=p99,
    )
    return LiveStats(
        sources={TOPIC: src} if received else {},
        callback_errors=0,
        edits=0,
        described={"delivered": 3},
        generator={"failed": failed_descriptions},
        ask_generator={},
    )


def levels(diag: Diagnostics, s: LiveStats | None, bad: int = 0) -> tuple[int, int]:
    camera, runtime = diag.statuses([TOPIC], s, unconvertible={TOPIC: bad}, provider="cpu")
    return camera.level, runtime.level


def test_a_camera_that_sends_nothing_is_an_error_after_5_s() -> None:
    clock = Clock()
    diag = Diagnostics("rap_edge", clock)
    clock.now += NO_FRAMES_ERROR_S - 1
    assert levels(diag, stats(0, 0)) == (OK, OK)
    clock.now += 1
    camera, _ = diag.statuses([TOPIC], stats(0, 0), unconvertible={})
    assert camera.level == ERROR
    assert camera.message == "no frames yet for 5.0 s"


def test_rates_stale_and_queue_wait_and_their_levels() -> None:
    clock = Clock()
    diag = Diagnostics("rap_edge", clock)
    clock.now += 1
    camera, runtime = diag.statuses(
        [TOPIC], stats(15, 14, dropped=1), unconvertible={}, provider="cpu", memory_size=4
    )
    assert camera.level == OK
    assert camera.name == f"rap_edge: camera {TOPIC}"
    assert camera.values["input_hz"] == "15.00"
    assert camera.values["processed_hz"] == "14.00"
    assert camera.values["stale"] == "1"
    assert camera.values["queue_wait_p99_ms"] == "20.0"
    assert runtime.values["provider"] == "cpu"
    assert runtime.values["memory_concepts"] == "4"
    clock.now += 1  # 15 more in, 5 processed: under half
    assert levels(diag, stats(30, 19)) == (WARN, OK)
    clock.now += 1
    assert levels(diag, stats(45, 34, p99=MAX_QUEUE_P99_MS + 1)) == (WARN, OK)
    clock.now += 1
    assert levels(diag, stats(60, 49, p99=20.0), bad=2) == (WARN, OK)  # unconvertible frames
    clock.now += 1
    assert levels(diag, stats(75, 64), bad=2) == (OK, OK)  # none new
    clock.now += 1
    assert levels(diag, stats(75, 64, since=NO_FRAMES_ERROR_S)) == (ERROR, OK)


def test_runtime_levels() -> None:
    diag = Diagnostics("rap_edge", Clock())
    assert levels(diag, None)[1] == ERROR  # not configured
    assert levels(diag, stats(1, 1, failed_descriptions=1))[1] == WARN


def test_percentile() -> None:
    assert _percentile([], 0.5) is None
    assert _percentile([4.0], 0.99) == 4.0
    assert _percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert _percentile([float(v) for v in range(101)], 0.99) == 99.0


def test_the_no_frames_threshold_is_a_setting() -> None:
    clock = Clock()
    diag = Diagnostics("rap_edge", clock, no_frames_error_s=1.5)
    clock.now += 1
    assert levels(diag, stats(15, 15, since=0.1)) == (OK, OK)
    clock.now += 1
    camera, runtime = diag.statuses(
        [TOPIC], stats(15, 15, since=1.5), unconvertible={}, extra={"annotated": "2"}
    )
    assert camera.level == ERROR
    assert camera.message == "no frames for 1.5 s"
    assert camera.hardware_id == TOPIC
    assert runtime.hardware_id == "rap_edge"
    assert runtime.values["annotated"] == "2"
    for bad in (0, -1.0, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ValueError, match="no_frames_error_s must be a positive number"):
            Diagnostics("rap_edge", clock, no_frames_error_s=bad)  # type: ignore[arg-type]
