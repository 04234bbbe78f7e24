"""What ``/diagnostics`` reports and at which level: pure Python, no ROS (tested without it).

Every ``period`` (1 s) the node turns :meth:`rap_edge.live.LiveRuntime.stats` into one
:class:`Status` per camera topic and one for the runtime; the node converts them to
``diagnostic_msgs/DiagnosticArray``. Levels, against these thresholds:

Per camera (``rap_edge: camera <topic>``):

* **ERROR**: no frame received for :data:`NO_FRAMES_ERROR_S` (5 s; the node's parameter
  ``stale_after_s``) or more, or never since the node started taking frames;
* **WARN**: the processed rate is under :data:`MIN_PROCESSED_RATIO` (50 %) of the input rate
  over the last period, the queue wait p99 is over :data:`MAX_QUEUE_P99_MS` (500 ms), or
  frames failed or could not be converted in the last period;
* **OK** otherwise.

The runtime (``rap_edge: runtime``): **ERROR** when it is not running (not configured, or
shutting down), **WARN** when the latest description failed or fell back, or a callback
raised, **OK** otherwise; its values name the provider, the memory's size, the LLM's state
and the latest error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rap_edge.live import LiveStats

__all__ = [
    "ERROR",
    "MAX_QUEUE_P99_MS",
    "MIN_PROCESSED_RATIO",
    "NO_FRAMES_ERROR_S",
    "OK",
    "WARN",
    "Diagnostics",
    "Status",
]

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
NO_FRAMES_ERROR_S = 5.0
MIN_PROCESSED_RATIO = 0.5
MAX_QUEUE_P99_MS = 500.0


@dataclass(frozen=True, slots=True)
class Status:
    """One ``diagnostic_msgs/DiagnosticStatus``: level, name, message and key/value pairs."""

    level: int
    name: str
    message: str
    values: dict[str, str] = field(default_factory=dict)
    hardware_id: str = ""


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


@dataclass(slots=True)
class _Seen:
    received: int = 0
    processed: int = 0
    failed: int = 0
    at: float = 0.0


class Diagnostics:
    """Turns successive runtime stats into statuses (rates over the time between calls)."""

    def __init__(
        self,
        node_name: str,
        clock: Any = time.monotonic,  # noqa: ANN401
        *,
        no_frames_error_s: float = NO_FRAMES_ERROR_S,
    ) -> None:
        """Start counting now (a camera that sends nothing is an ERROR after 5 s).

        Raises:
            ValueError: ``no_frames_error_s`` is not a positive number.
        """
        if not (
            isinstance(no_frames_error_s, (int, float))
            and not isinstance(no_frames_error_s, bool)
            and 0 < no_frames_error_s < float("inf")
        ):
            msg = (
                "no_frames_error_s must be a positive number of seconds, "
                f"got {no_frames_error_s!r}"
            )
            raise ValueError(msg)
        self.node_name = node_name
        self.no_frames_error_s = float(no_frames_error_s)
        self._clock = clock
        self._started = clock()
        self._seen: dict[str, _Seen] = {}

    def statuses(  # noqa: PLR0913 - what the node knows besides the stats
        self,
        topics: list[str],
        stats: LiveStats | None,
        *,
        unconvertible: dict[str, int],
        provider: str = "",
        memory_size: int | None = None,
        llm: str = "",
        latest_error: str = "",
        extra: dict[str, str] | None = None,
    ) -> list[Status]:
        """The statuses of every camera topic and of the runtime, now.

        ``extra`` adds the node's own counters to the runtime's values.
        """
        now = self._clock()
        out = [self._camera(topic, stats, unconvertible.get(topic, 0), now) for topic in topics]
        if stats is None:
            out.append(
                Status(
                    ERROR,
                    f"{self.node_name}: runtime",
                    "not running",
                    {"latest_error": latest_error},
                    self.node_name,
                )
            )
            return out
        level, message = OK, "running"
        problems = []
        if stats.callback_errors:
            problems.append(f"{stats.callback_errors} callback error(s)")
        gen = stats.generator
        if gen.get("failed", 0):
            problems.append(f"{gen['failed']} description(s) failed")
        if problems:
            level, message = WARN, "; ".join(problems)
        values = {
            "provider": provider,
            "memory_concepts": "" if memory_size is None else str(memory_size),
            "llm": llm,
            "descriptions_delivered": str(stats.described.get("delivered", 0)),
            "descriptions_failed": str(gen.get("failed", 0)),
            "descriptions_fell_back": str(gen.get("fell_back", 0)),
            "edits": str(stats.edits),
            "latest_error": latest_error,
            **(extra or {}),
        }
        out.append(Status(level, f"{self.node_name}: runtime", message, values, self.node_name))
        return out

    def _camera(self, topic: str, stats: LiveStats | None, bad: int, now: float) -> Status:
        src = stats.sources.get(topic) if stats is not None else None
        received = (src.received if src else 0) + bad
        processed = src.processed if src else 0
        failed = (src.errors if src else 0) + bad
        before = self._seen.get(topic)
        if before is None:
            before = self._seen[topic] = _Seen(at=self._started)
        span = max(now - before.at, 1e-6)
        input_hz = (received - before.received) / span
        processed_hz = (processed - before.processed) / span
        new_failed = failed - before.failed
        self._seen[topic] = _Seen(received, processed, failed, now)
        since = src.since_received_s if src is not None else None
        p50 = src.queue_wait_p50_ms if src is not None else None
        p99 = src.queue_wait_p99_ms if src is not None else None
        values = {
            "input_hz": _fmt(input_hz),
            "processed_hz": _fmt(processed_hz),
            "received": str(received),
            "processed": str(processed),
            "stale": str(src.dropped if src else 0),
            "dropped": str(failed),
            "queue_wait_p50_ms": _fmt(p50, 1),
            "queue_wait_p99_ms": _fmt(p99, 1),
            "seconds_since_frame": _fmt(since, 1),
        }
        name = f"{self.node_name}: camera {topic}"
        quiet = since if since is not None else now - self._started
        if quiet >= self.no_frames_error_s:
            what = "no frames yet" if since is None else "no frames"
            return Status(ERROR, name, f"{what} for {quiet:.1f} s", values, topic)
        problems = []
        if input_hz > 0 and processed_hz < MIN_PROCESSED_RATIO * input_hz:
            problems.append(f"processing {processed_hz:.1f} of {input_hz:.1f} frames/s")
        if p99 is not None and p99 > MAX_QUEUE_P99_MS:
            problems.append(f"queue wait p99 {p99:.0f} ms")
        if new_failed > 0:
            problems.append(f"{new_failed} frame(s) failed or unconvertible")
        if problems:
            return Status(WARN, name, "; ".join(problems), values, topic)
        return Status(OK, name, f"{processed_hz:.1f} frames/s processed", values, topic)
