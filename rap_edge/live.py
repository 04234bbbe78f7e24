"""Live recognition for several cameras sharing one session, with edits while frames flow.

The threading around a :class:`~rap_edge.app.Session` (the ROS 2 node and the web app drive
this; the node only converts messages). The session owns the models, memory, thresholds,
edits and questions; :class:`LiveRuntime` adds only:

* per-source latest-frame slots: :meth:`LiveRuntime.submit` never waits for processing; a
  frame still waiting when the next one of its source arrives is replaced and counted as
  dropped (latest first: a slow device shows the present, not a backlog);
* one processing thread that takes the waiting frames round-robin across sources and runs each
  source's own :class:`~rap_edge.pipeline.Pipeline` (tracks are per camera). A frame that
  fails is counted with its message; nothing a frame or a callback does stops the thread;
* the description worker (:class:`~rap_edge.generate.Describer`, latest first; model
  backends run in a child process, so they cannot stall frames), asked per source when the
  recognised set of that camera changed or ``describe_every`` seconds passed.

The memory is thread-safe and the models keep no per-call state, so edits and questions run
on the caller's thread next to frame processing. One lock remains here, ``work``: the
pipelines' tracks. The processing thread holds it while it processes a frame; an edit takes it
afterwards to make the tracks forget their identity votes (a removed concept is never named
again, an added one is named in the next frame), and :meth:`LiveRuntime.set_config` takes it to
change settings between frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from rap_edge.app import RUNTIME_FIELDS, Session, Settings
from rap_edge.errors import InvalidInputError, RapEdgeError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Self

    import numpy as np
    import numpy.typing as npt

    from rap_edge.generate import Describer, GenerationResult
    from rap_edge.interfaces import Concept
    from rap_edge.memory import Memory
    from rap_edge.pipeline import (
        FaceModels,
        FrameResult,
        ObjectModels,
        Thresholds,
        UnknownClusters,
    )

__all__ = [
    "RUNTIME_FIELDS",
    "LiveAnswer",
    "LiveConfig",
    "LiveRuntime",
    "LiveStats",
    "SourceStats",
]

log = logging.getLogger(__name__)

MAX_SOURCES = 64  # distinct source names; more is a caller bug (a name per frame?)
KEPT_ERRORS = 5  # last error messages kept per source
KEPT_WAITS = 256  # queue waits kept per source for the percentiles in stats()

#: The live runtime's settings are the application's settings (one object, checked once).
LiveConfig = Settings


def _is_number(value: object) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _percentile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted values, by linear interpolation; None if empty."""
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Counters of one source.

    Attributes:
        received: Frames submitted.
        processed: Frames processed (``on_result`` was called for each).
        dropped: Frames replaced by a newer one of the same source before processing.
        errors: Frames that failed (not an image, a model error, ...).
        last_errors: The latest error messages, oldest first (at most 5).
        last_frame: Index of the latest processed frame (None before the first).
        last_ms: Processing time of the latest processed frame, in milliseconds.
        since_received_s: Seconds since the latest frame was submitted (None before the
            first).
        queue_wait_p50_ms: Median wait of a frame for the processing thread, over the last
            256 processed frames (None before the first).
        queue_wait_p99_ms: Its 99th percentile over the same frames.
    """

    received: int
    processed: int
    dropped: int
    errors: int
    last_errors: tuple[str, ...]
    last_frame: int | None
    last_ms: float | None
    since_received_s: float | None = None
    queue_wait_p50_ms: float | None = None
    queue_wait_p99_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "received": self.received,
            "processed": self.processed,
            "dropped": self.dropped,
            "errors": self.errors,
            "last_errors": list(self.last_errors),
            "last_frame": self.last_frame,
            "last_ms": None if self.last_ms is None else round(self.last_ms, 2),
            "since_received_s": _round(self.since_received_s, 3),
            "queue_wait_p50_ms": _round(self.queue_wait_p50_ms, 2),
            "queue_wait_p99_ms": _round(self.queue_wait_p99_ms, 2),
        }


@dataclass(frozen=True, slots=True)
class LiveStats:
    """A snapshot of a runtime's counters.

    Attributes:
        sources: Per source name.
        callback_errors: Exceptions raised by ``on_result`` or ``on_description``, or while
            building a description's prompt (each logged with its traceback).
        edits: Memory edits done through the runtime.
        described: Descriptions requested, replaced while queued by a newer request, done
            by the worker, and delivered to ``on_description`` (keys ``requested``,
            ``replaced``, ``done``, ``delivered``); zeros without ``describe``.
        generator: The description generator's counters (``requests``, ``regenerated``,
            ``fell_back``, ``failed``); empty without ``describe``.
        ask_generator: The same for :meth:`LiveRuntime.ask`; empty before the first question.
    """

    sources: dict[str, SourceStats]
    callback_errors: int
    edits: int
    described: dict[str, int]
    generator: dict[str, int]
    ask_generator: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "sources": {k: v.to_json() for k, v in self.sources.items()},
            "callback_errors": self.callback_errors,
            "edits": self.edits,
            "described": dict(self.described),
            "generator": dict(self.generator),
            "ask_generator": dict(self.ask_generator),
        }


class LiveAnswer(NamedTuple):
    """What :meth:`LiveRuntime.ask` returns (unpacks as ``answer, frame``).

    Attributes:
        answer: The generated answer.
        frame: The recognitions the answer is about (the given image's, or the latest
            processed frame's).
    """

    answer: GenerationResult
    frame: FrameResult


@dataclass(slots=True)
class _Frame:
    image: Any
    meta: Any
    stamp: float
    queued: float = 0.0  # time.perf_counter() at submit: the wait goes into the timings


@dataclass(slots=True)
class _Source:
    """One source's slot, pipeline and counters (counters and slot under ``_cond``)."""

    name: str
    pending: _Frame | None = None
    pipeline: Any = None  # a Pipeline, made on the source's first frame
    received: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=KEPT_ERRORS))
    last: tuple[FrameResult, Any] | None = None
    last_received: float | None = None  # time.monotonic() of the latest submit
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=KEPT_WAITS))


class LiveRuntime:
    """Frames from several sources, one session, edits and questions while frames flow.

    Use as a context manager, or call :meth:`close`. See the module docstring for the threads.
    """

    def __init__(
        self,
        session: Session,
        *,
        on_result: Callable[[str, FrameResult, Any], None] | None = None,
        on_description: Callable[[str, int | None, GenerationResult, Any], None] | None = None,
        close_session: bool = False,
        unknown: UnknownClusters | None = None,
    ) -> None:
        """Start the processing thread (and with ``describe``, the backend and describer).

        Args:
            session: Models, memory, thresholds and settings (see :meth:`Session.open`).
            on_result: Called on the processing thread as ``on_result(source, result, meta)``
                for every processed frame, ``meta`` being what was submitted with it.
            on_description: Called on the generation thread as
                ``on_description(source, frame_index, result, meta)`` for each description.
            close_session: Close the session with the runtime.
            unknown: Where every source's unknown faces are clustered (None: not clustered).
                Only the processing thread writes to it; a caller that edits it from another
                thread (name, merge, dismiss) makes its methods thread-safe.

        Raises:
            ModelStoreError: a named generation backend that cannot load (with ``describe``).
        """
        self.session = session
        self.on_result = on_result
        self.on_description = on_description
        self._close_session = close_session
        self.unknown = unknown
        self._describe_every: dict[str, float] = {}  # per source, over the settings' period
        self._work = threading.RLock()  # pipelines' tracks
        self._cond = threading.Condition()  # slots and counters
        self._sources: dict[str, _Source] = {}
        self._order: list[str] = []
        self._next = 0  # where the next round-robin search starts in _order
        self._latest: _Source | None = None
        self._closed = False
        self._callback_errors = 0
        self._edits = 0
        self._desc_lock = threading.Lock()
        self._desc_requested = 0
        self._desc_delivered = 0
        self._describer: Describer | None = None
        if session.settings.describe:
            self._describer = session.describer(self._described)
        session.on_edit(self._edited)
        self._thread = threading.Thread(target=self._loop, name="rap-edge-live", daemon=True)
        self._thread.start()

    @classmethod
    def from_models(  # noqa: PLR0913 - the parts of a session
        cls,
        models: FaceModels,
        memory: Memory,
        config: Settings | None = None,
        *,
        thresholds: Thresholds | None = None,
        objects: ObjectModels | None = None,
        on_result: Callable[[str, FrameResult, Any], None] | None = None,
        on_description: Callable[[str, int | None, GenerationResult, Any], None] | None = None,
    ) -> LiveRuntime:
        """A runtime over a session made of loaded parts (the memory stays the caller's).

        Reference images without vectors from the encoders in use are embedded first.

        Raises:
            ConfigError: ``config.objects`` without ``objects``.
            InvalidInputError: a bad ``config``.
        """
        session = Session(
            config or Settings(),
            models=models,
            memory=memory,
            thresholds=thresholds,
            objects=objects,
            isolate=True,
        )
        session.embed_pending()
        return cls(session, on_result=on_result, on_description=on_description, close_session=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the runtime."""
        self.close()

    @property
    def config(self) -> Settings:
        """The settings in use."""
        return self.session.settings

    @property
    def memory(self) -> Memory | None:
        """The session's memory."""
        return self.session.memory

    @property
    def models(self) -> FaceModels:
        """The session's face models."""
        return self.session.models

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the processing thread, the describer and the backend's process.

        Waiting frames are discarded; a frame being processed finishes; a description being
        generated gets what is left of ``timeout``, then its backend process is stopped (the
        template answers it). Safe to call twice. The session is closed only if the runtime
        owns it (``close_session``); its backend is stopped either way.

        Returns:
            True when every thread stopped within the time.
        """
        end = time.monotonic() + max(0.0, timeout)
        with self._cond:
            self._closed = True
            for st in self._sources.values():
                st.pending = None
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(max(0.0, end - time.monotonic()))
        ok = not self._thread.is_alive() or threading.current_thread() is self._thread
        describer, self._describer = self._describer, None
        if describer is not None:
            describer.worker.wait_idle(max(0.0, end - time.monotonic()))
        # A generation still running in the backend's child process ends now.
        self.session.close() if self._close_session else self.session.close_backend()
        if describer is not None:
            try:
                describer.worker.close()  # ends at once: nothing is queued or running now
            except RuntimeError:  # close() called from on_description: that thread ends next
                log.warning("rap-edge live runtime: closed from its own generation thread")
        if not ok:
            log.warning("rap-edge live runtime: a thread did not stop within %.1f s", timeout)
        return ok

    def set_describe_every(self, source: str, seconds: float | None) -> None:
        """Describe ``source`` also every ``seconds`` while unchanged (0: only on changes).

        None goes back to the settings' ``describe_every``. A camera's own period, as
        ``describe_every`` in :class:`~rap_edge.app._cameras.CameraSettings` gives it.

        Raises:
            InvalidInputError: not a number of seconds in 0..86400.
        """
        if seconds is None:
            self._describe_every.pop(source, None)
            return
        if not _is_number(seconds) or not 0 <= seconds <= 86400:  # noqa: PLR2004
            msg = f"describe_every of {source!r} must be 0..86400 seconds, got {seconds!r}"
            raise InvalidInputError(msg)
        self._describe_every[source] = float(seconds)

    # -- frames ------------------------------------------------------------------------------

    def submit(
        self,
        source: str,
        image: npt.NDArray[np.uint8],
        meta: Any = None,  # noqa: ANN401
        *,
        stamp: float | None = None,
    ) -> None:
        """Hand over a frame; returns at once (never waits for processing).

        The frame replaces one of the same source that is still waiting (counted as
        dropped). Bad images are not refused here: their processing fails and is counted in
        :meth:`stats`. The array is kept as it is, not copied: do not write to it afterwards.
        Frames submitted after :meth:`close` are ignored.

        Args:
            source: The source's name, e.g. the camera topic.
            image: BGR uint8 [H, W, 3].
            meta: Anything; given back with the result and description (e.g. the header).
            stamp: Capture time in seconds (default: now); becomes ``FrameResult.timestamp``.

        Raises:
            InvalidInputError: a source that is not a non-empty string, more than 64
                sources, or a stamp that is not a finite number.
        """
        if not isinstance(source, str) or not source.strip():
            msg = f"source must be a non-empty name, got {source!r}"
            raise InvalidInputError(msg)
        if stamp is not None and not _is_number(stamp):
            msg = f"stamp must be a finite number of seconds, got {stamp!r}"
            raise InvalidInputError(msg)
        frame = _Frame(
            image, meta, time.time() if stamp is None else float(stamp), time.perf_counter()
        )
        with self._cond:
            if self._closed:
                return
            st = self._sources.get(source)
            if st is None:
                if len(self._sources) >= MAX_SOURCES:
                    msg = f"more than {MAX_SOURCES} sources; {source!r} is refused"
                    raise InvalidInputError(msg)
                st = self._sources[source] = _Source(source)
                self._order.append(source)
            st.received += 1
            st.last_received = time.monotonic()
            if st.pending is not None:
                st.dropped += 1
            st.pending = frame
            self._cond.notify()

    def _take(self) -> tuple[_Source, _Frame] | None:
        """The next waiting frame, round-robin across sources (call under ``_cond``)."""
        n = len(self._order)
        for j in range(n):
            i = (self._next + j) % n
            st = self._sources[self._order[i]]
            if st.pending is not None:
                frame, st.pending = st.pending, None
                self._next = i + 1  # taken modulo the count of sources then (it may grow)
                return st, frame
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                item = self._take()
                while item is None and not self._closed:
                    self._cond.wait()
                    item = self._take()
                if self._closed:
                    return
            assert item is not None  # noqa: S101 - loop condition
            try:
                self._handle(*item)
            except Exception:
                log.exception("rap-edge live runtime: unexpected failure on %s", item[0].name)
                self._failed(item[0], "internal error (see the log)")

    def _failed(self, st: _Source, message: str) -> None:
        with self._cond:
            st.errors += 1
            st.last_errors.append(message)

    def _handle(self, st: _Source, frame: _Frame) -> None:
        try:
            with self._work:
                if st.pipeline is None:
                    st.pipeline = self.session.pipeline(unknown=self.unknown)
                waited = (time.perf_counter() - frame.queued) * 1000
                result = st.pipeline.process(frame.image, timestamp=frame.stamp, source=st.name)
            # How long the frame waited for the processing thread (not part of "total").
            result.timings_ms["queue"] = round(waited, 3)
        except RapEdgeError as err:  # a bad frame or a model error: count it, go on
            self._failed(st, f"{type(err).__name__}: {err}")
            return
        except Exception as err:
            log.exception("rap-edge live runtime: frame of %s failed", st.name)
            self._failed(st, f"{type(err).__name__}: {err}")
            return
        with self._cond:
            st.processed += 1
            st.waits.append(waited)
            st.last = (result, frame.meta)
            self._latest = st
        if self.on_result is not None:
            try:
                self.on_result(st.name, result, frame.meta)
            except Exception:  # the caller's bug must not end the stream
                log.exception("rap-edge live runtime: on_result raised")
                self._callback_failed()
        if self._describer is not None:
            self._offer(st, result, frame.meta)

    def _callback_failed(self) -> None:
        with self._cond:
            self._callback_errors += 1

    # -- descriptions ------------------------------------------------------------------------

    def _offer(self, st: _Source, result: FrameResult, meta: Any) -> None:  # noqa: ANN401
        """Ask the describer for words if this source's set changed or its period passed.

        The description comes back to :meth:`_described` tagged with its source, frame index
        and meta.
        """
        describer = self._describer
        if describer is None:
            return
        try:
            rid = describer.offer(
                result,
                source=st.name,
                tag=(st.name, result.index, meta),
                every=self._describe_every.get(st.name),
            )
        except Exception:
            log.exception("rap-edge live runtime: describing a frame of %s failed", st.name)
            self._callback_failed()
            return
        if rid is not None:
            with self._desc_lock:
                self._desc_requested += 1

    def _described(self, tag: tuple[str, int, Any] | None, answer: GenerationResult) -> None:
        """On the generation thread: route a description to its source."""
        if tag is None:
            return
        with self._desc_lock:
            self._desc_delivered += 1
        if self.on_description is None:
            return
        source, index, meta = tag
        try:
            self.on_description(source, index, answer, meta)
        except Exception:  # it would end the worker thread
            log.exception("rap-edge live runtime: on_description raised")
            self._callback_failed()

    # -- questions ---------------------------------------------------------------------------

    def ask(
        self, question: str, image: npt.NDArray[np.uint8] | None = None, source: str | None = None
    ) -> LiveAnswer:
        """Answer ``question`` about an image, or about a source's latest processed frame.

        Runs on the caller's thread (a service handler); frames keep flowing meanwhile. The
        generation backend is shared with the describer (a model answers one request at a
        time).

        Args:
            question: Such as ``"Who is here?"`` (at most 1000 characters are used).
            image: A BGR uint8 image to recognise (on its own, not tracked); None: use the
                latest processed frame of ``source``.
            source: Whose latest frame (None: the latest frame of any source); ignored with
                ``image``.

        Raises:
            InvalidInputError: an empty question, a bad image, no processed frame yet, or
                the runtime is closed.
            ModelStoreError: the backend cannot load (first question without ``describe``).
        """
        if self._closed:  # its backend is stopped; opening another would leak it
            msg = "the live runtime is closed"
            raise InvalidInputError(msg)
        if not isinstance(question, str) or not question.strip():
            msg = f"the question must be non-empty text, got {question!r}"
            raise InvalidInputError(msg)
        frame = None
        if image is None:
            with self._cond:
                if source is not None:
                    st = self._sources.get(source)
                    if st is None or st.last is None:
                        msg = f"no frame of source {source!r} has been processed yet"
                        raise InvalidInputError(msg)
                elif (st := self._latest) is None or st.last is None:
                    msg = "no frame has been processed yet (submit one, or give an image)"
                    raise InvalidInputError(msg)
                frame = st.last[0]
        out = self.session.ask(question, image=image, frame=frame)
        return LiveAnswer(out.answer, out.frame)

    # -- settings ----------------------------------------------------------------------------

    def set_config(self, **changes: Any) -> Settings:  # noqa: ANN401 - checked by Settings
        """Change settings while frames flow; the next frame of every source uses them.

        Changeable: ``top_k``, ``margin``, ``face_threshold``, ``object_threshold`` (None: the
        calibrated value again), ``embed_every``, ``track``, ``tiles``, ``describe_every``,
        ``max_concepts``. A change of a threshold, the margin or ``top_k`` makes the tracks
        forget their identity votes, so the next frame shows the new decision.

        Returns:
            The new settings.

        Raises:
            InvalidInputError: an unknown or fixed field, or a bad value (nothing changes).
        """
        with self._work:
            old = self.session.settings
            new = self.session.set_runtime(**changes)
            for st in list(self._sources.values()):
                if st.pipeline is not None:
                    st.pipeline.config = self.session.pipeline_config()
            decisions = ("top_k", "margin", "face_threshold", "object_threshold")
            if any(getattr(old, k) != getattr(new, k) for k in decisions):
                self._forget_decisions()
        describer = self._describer
        if describer is not None:
            describer.every = new.describe_every
            describer.max_concepts = new.max_concepts
        return new

    def _forget_decisions(self) -> None:
        """Make every stream decide afresh in its next frame (hold ``_work``).

        Tracks keep their ids and embeddings; only the identity votes, taken against the
        memory or settings as they were, are dropped, as are the repeated object results.
        """
        for st in list(self._sources.values()):
            if st.pipeline is not None:
                st.pipeline.forget_decisions()

    # -- memory edits (the session's, with the streams' votes forgotten after each) ---------

    def list_concepts(self, category: str = "") -> list[Concept]:
        """The memory's concepts (of ``category`` when given), sorted by name."""
        return self.session.list_concepts(category)

    def get_concept(self, ref: str) -> Concept:
        """The concept with this id or name (see :meth:`Session.get_concept`)."""
        return self.session.get_concept(ref)

    def add_concept(  # noqa: PLR0913 - the fields of a concept
        self,
        name: str,
        category: str,
        *,
        info: str = "",
        aliases: Sequence[str] = (),
        images: Sequence[npt.NDArray[np.uint8]] = (),
        whole_image: bool = False,
    ) -> Concept:
        """Add a concept and embed its images now (see :meth:`Session.add_concept`)."""
        return self.session.add_concept(
            name, category, info=info, aliases=aliases, images=images, whole_image=whole_image
        )

    def update_concept(  # noqa: PLR0913 - the fields of a concept
        self,
        ref: str,
        *,
        name: str | None = None,
        category: str | None = None,
        info: str | None = None,
        aliases: Sequence[str] | None = None,
        add_images: Sequence[npt.NDArray[np.uint8]] = (),
        whole_image: bool = False,
    ) -> Concept:
        """Change a concept (see :meth:`Session.update_concept`)."""
        return self.session.update_concept(
            ref,
            name=name,
            category=category,
            info=info,
            aliases=aliases,
            add_images=add_images,
            whole_image=whole_image,
        )

    def remove_concept(self, ref: str) -> Concept:
        """Forget a concept (see :meth:`Session.remove_concept`)."""
        return self.session.remove_concept(ref)

    def _edited(self) -> None:
        with self._work:
            self._forget_decisions()
        with self._cond:
            self._edits += 1

    # -- counters ----------------------------------------------------------------------------

    def stats(self) -> LiveStats:
        """A snapshot of the counters."""
        now = time.monotonic()
        with self._cond:
            waits = {st.name: sorted(st.waits) for st in self._sources.values()}
            sources = {
                st.name: SourceStats(
                    received=st.received,
                    processed=st.processed,
                    dropped=st.dropped,
                    errors=st.errors,
                    last_errors=tuple(st.last_errors),
                    last_frame=None if st.last is None else st.last[0].index,
                    last_ms=None if st.last is None else st.last[0].timings_ms.get("total"),
                    since_received_s=None
                    if st.last_received is None
                    else max(now - st.last_received, 0.0),
                    queue_wait_p50_ms=_percentile(waits[st.name], 0.5),
                    queue_wait_p99_ms=_percentile(waits[st.name], 0.99),
                )
                for st in self._sources.values()
            }
            callback_errors, edits = self._callback_errors, self._edits
        describer = self._describer
        with self._desc_lock:
            described = {
                "requested": self._desc_requested,
                "replaced": describer.worker.replaced if describer else 0,
                "done": describer.worker.done if describer else 0,
                "delivered": self._desc_delivered,
            }
        return LiveStats(
            sources=sources,
            callback_errors=callback_errors,
            edits=edits,
            described=described,
            generator=self.session.generator_stats("describe"),
            ask_generator=self.session.generator_stats("ask"),
        )
