"""Live recognition for several cameras sharing one memory, with edits while frames flow.

The ROS-free core of the ROS 2 node (the node only converts messages): :class:`LiveRuntime`
takes frames from any number of sources (camera topics), recognises the memory's people and
things on one processing thread, describes the scene on a generation worker, answers questions,
and lets service handlers edit the memory while frames are processed.

Threads and locks:

* :meth:`LiveRuntime.submit` never waits for processing: each source has a one-frame slot; a
  frame that is still waiting when the next one of its source arrives is replaced and counted
  as dropped (latest first: a slow device shows the present, not a backlog).
* One processing thread takes the waiting frames round-robin across sources and runs each
  source's :class:`~rap_edge.pipeline.Pipeline` (tracks are per camera; the models, the memory
  and the thresholds are shared). A frame that fails is counted with its message; nothing a
  frame or a callback does stops the thread.
* The :class:`~rap_edge.memory.Memory` is thread-safe (per-thread SQLite connections, one
  writer at a time, a readers-writer lock around the USearch index; edits are visible to the
  very next search; see its class docstring and ``tests/memory/test_concurrency.py``), and
  the models keep no per-call state (ONNX Runtime sessions may run concurrently; the landmark
  trees are read-only arrays). So edits and questions run on the caller's thread next to
  frame processing, without stopping it. Two locks remain:

  - ``work``: a pipeline's tracks and the shared thresholds. The processing thread holds it
    while it processes a frame; an edit takes it afterwards to make the tracks forget their
    identity votes (a removed concept is never named again, an added one is named in the
    next frame, instead of after the vote window turns over); :meth:`~LiveRuntime.set_config`
    takes it to change settings between frames.
  - ``edit``: one memory edit at a time (an edit is several memory transactions: add, embed,
    roll back on failure).

* Descriptions go through one :class:`~rap_edge.generate.Describer` (a latest-first worker
  thread; model backends run in a child process, so they cannot stall frames); whether a frame
  needs one is decided per source (the recognised set of that camera changed, or
  ``describe_every`` seconds passed for it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rap_edge.errors import ConfigError, InvalidInputError, RapEdgeError
from rap_edge.generate import (
    BACKENDS,
    Describer,
    GenerationResult,
    Generator,
    frame_prompt,
    memory_names,
    open_backend,
)
from rap_edge.pipeline import (
    FaceEmbedder,
    FrameResult,
    ObjectEmbedder,
    Pipeline,
    PipelineConfig,
    Thresholds,
    embed_faces_in_memory,
    embed_objects_in_memory,
    is_object_category,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Self

    import numpy.typing as npt

    from rap_edge.generate import Backend
    from rap_edge.interfaces import Concept
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FaceModels, ObjectModels

__all__ = ["LiveAnswer", "LiveConfig", "LiveRuntime", "LiveStats", "SourceStats"]

log = logging.getLogger(__name__)

MAX_SOURCES = 64  # distinct source names; more is a caller bug (a name per frame?)
MAX_IMAGES = 32  # reference images per edit
KEPT_ERRORS = 5  # last error messages kept per source
LIVE_ORIGIN = "live config"
# What set_config may change while frames flow (the rest shapes threads, models or backends).
RUNTIME_FIELDS = frozenset(
    {
        "top_k",
        "margin",
        "face_threshold",
        "object_threshold",
        "embed_every",
        "track",
        "tiles",
        "describe_every",
        "max_concepts",
    }
)
_PROVIDERS = ("auto", "cpu", "cuda")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveConfig:
    """Settings of a :class:`LiveRuntime`.

    Attributes:
        top_k: Concepts retrieved per face or object, 1..100.
        margin: Best-vs-second cosine margin under which a match is ``uncertain``, in [0, 1)
            (None: the thresholds' margin, 0.02 by default).
        face_threshold: Cosine threshold for faces in [-1, 1] (None: the calibrated value
            from the thresholds given to the runtime, else the face encoder's manifest).
        object_threshold: The same for objects (None: calibrated or manifest).
        embed_every: Re-embed a tracked face at least every N frames, 1..10000.
        track: Follow faces across frames (off: each frame stands alone).
        tiles: Also detect faces on a tiles x tiles grid (1: off; 2 or 3 find far faces).
        objects: Also recognise the memory's objects and pets (needs ``ObjectModels``).
        describe: Describe each source's scene in words when its recognised set changes.
        describe_every: With ``describe``, also describe a source every N seconds while its
            set is unchanged (0: only on changes), 0..86400.
        max_concepts: Most concepts in a prompt, 0..50 (the lowest scores go first).
        backend: Generation backend (``auto``, ``ortgenai``, ``transformers``, ``template``;
            None: ``$RAP_EDGE_BACKEND``, else ``auto``).
        llm: Model folder for the backend (None: the model store's default).
        llm_provider: Where the model runs: ``auto``, ``cpu`` or ``cuda``.
        llm_threads: CPU threads for the ``ortgenai`` decoder, 1..1024 (None: every core).
        max_tokens: Longest answer in tokens, 1..4096.
    """

    top_k: int = 3
    margin: float | None = None
    face_threshold: float | None = None
    object_threshold: float | None = None
    embed_every: int = 10
    track: bool = True
    tiles: int = 1
    objects: bool = False
    describe: bool = False
    describe_every: float = 0.0
    max_concepts: int = 5
    backend: str | None = None
    llm: str | os.PathLike[str] | None = None
    llm_provider: str = "auto"
    llm_threads: int | None = None
    max_tokens: int = 96

    def check(self) -> None:
        """Refuse absurd values with a message naming the field.

        Raises:
            InvalidInputError: on a value of the wrong type or out of range.
        """
        ints = {
            "top_k": (1, 100),
            "embed_every": (1, 10_000),
            "tiles": (1, 4),
            "max_concepts": (0, 50),
            "max_tokens": (1, 4096),
        }
        for name, (lo, hi) in ints.items():
            value = getattr(self, name)
            if not _is_int(value) or not lo <= value <= hi:
                msg = f"{name} must be an integer in {lo}..{hi}, got {value!r}"
                raise InvalidInputError(msg)
        for name in ("track", "objects", "describe"):
            if not isinstance(getattr(self, name), bool):
                msg = f"{name} must be true or false, got {getattr(self, name)!r}"
                raise InvalidInputError(msg)
        for name in ("face_threshold", "object_threshold"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and -1.0 <= value <= 1.0):
                msg = f"{name} must be a cosine similarity in [-1, 1] (or unset), got {value!r}"
                raise InvalidInputError(msg)
        if self.margin is not None and not (_is_number(self.margin) and 0 <= self.margin < 1):
            msg = f"margin must be a number in [0, 1) (or unset), got {self.margin!r}"
            raise InvalidInputError(msg)
        if not (_is_number(self.describe_every) and 0 <= self.describe_every <= 86_400):  # noqa: PLR2004
            msg = f"describe_every must be 0..86400 seconds, got {self.describe_every!r}"
            raise InvalidInputError(msg)
        if self.backend is not None and self.backend not in BACKENDS:
            msg = f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            raise InvalidInputError(msg)
        if self.llm is not None and (
            not isinstance(self.llm, (str, os.PathLike)) or not str(self.llm).strip()
        ):
            msg = f"llm must be a model folder, got {self.llm!r}"
            raise InvalidInputError(msg)
        if self.llm_provider not in _PROVIDERS:
            msg = f"llm_provider must be one of {', '.join(_PROVIDERS)}, got {self.llm_provider!r}"
            raise InvalidInputError(msg)
        if self.llm_threads is not None and not (
            _is_int(self.llm_threads) and 1 <= self.llm_threads <= 1024  # noqa: PLR2004
        ):
            msg = f"llm_threads must be an integer in 1..1024 (or unset), got {self.llm_threads!r}"
            raise InvalidInputError(msg)


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
    """

    received: int
    processed: int
    dropped: int
    errors: int
    last_errors: tuple[str, ...]
    last_frame: int | None
    last_ms: float | None

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
    pipeline: Pipeline | None = None
    received: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=KEPT_ERRORS))
    last: tuple[FrameResult, Any] | None = None


def _check_image(image: object, what: str) -> npt.NDArray[np.uint8]:
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3  # noqa: PLR2004
        or image.shape[2] != 3  # noqa: PLR2004
        or 0 in image.shape
    ):
        got = (
            f"{image.dtype} {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        msg = (
            f"{what} must be a BGR uint8 image [H, W, 3], got {got} "
            "(rap_edge.sources.normalize_frame converts other formats)"
        )
        raise InvalidInputError(msg)
    return image


def _check_images(images: object) -> list[npt.NDArray[np.uint8]]:
    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        msg = f"images must be a list of BGR images, got {type(images).__name__}"
        raise InvalidInputError(msg)
    if len(images) > MAX_IMAGES:
        msg = f"at most {MAX_IMAGES} images per edit, got {len(images)}"
        raise InvalidInputError(msg)
    return [_check_image(img, f"image #{i + 1}") for i, img in enumerate(images)]


class LiveRuntime:
    """Frames from several sources, one memory, edits and questions while frames flow.

    Use as a context manager, or call :meth:`close`. See the module docstring for the threads.
    """

    def __init__(  # noqa: PLR0913
        self,
        models: FaceModels,
        memory: Memory,
        config: LiveConfig | None = None,
        *,
        thresholds: Thresholds | None = None,
        objects: ObjectModels | None = None,
        on_result: Callable[[str, FrameResult, Any], None] | None = None,
        on_description: Callable[[str, int | None, GenerationResult, Any], None] | None = None,
    ) -> None:
        """Start the processing thread (and with ``describe``, the backend and describer).

        Args:
            models: The face models (shared by every source).
            memory: The concept memory (shared; stays the caller's to close).
            config: Settings (checked; default :class:`LiveConfig`).
            thresholds: Calibrated thresholds (copied; the manifests fill in missing encoders).
            objects: The object path's models (used when ``config.objects``).
            on_result: Called on the processing thread as ``on_result(source, result, meta)``
                for every processed frame, ``meta`` being what was submitted with it.
            on_description: Called on the generation thread as
                ``on_description(source, frame_index, result, meta)`` for each description.

        Raises:
            ConfigError: ``config.objects`` without ``objects``.
            InvalidInputError: a bad ``config``.
            ModelStoreError: a named generation backend that cannot load (with ``describe``).
        """
        config = config or LiveConfig()
        config.check()
        if config.objects and objects is None:
            msg = "objects is on but no ObjectModels were given (load them, or turn it off)"
            raise ConfigError(msg)
        self.models = models
        self.memory = memory
        self.objects = objects if config.objects else None
        self.on_result = on_result
        self.on_description = on_description
        base = thresholds or Thresholds()
        self._thresholds = Thresholds(
            values=dict(base.values),
            origin=dict(base.origin),
            margin=base.margin,
            details=dict(base.details),
        )
        self._thresholds.set_default(models.encoder_id, models.encoder.manifest.threshold)
        if self.objects is not None:
            self._thresholds.set_default(
                self.objects.encoder_id, self.objects.encoder.manifest.threshold
            )
        self._base = (
            dict(self._thresholds.values),
            dict(self._thresholds.origin),
            self._thresholds.margin,
        )
        self._config = config
        self._apply_thresholds(config)
        # Reference images without vectors from the encoders in use (added offline, or a
        # memory made with another encoder) are embedded before the first frame.
        self._embed()

        self._work = threading.RLock()  # pipelines' tracks and the thresholds
        self._edit = threading.Lock()  # one memory edit at a time
        self._cond = threading.Condition()  # slots and counters
        self._sources: dict[str, _Source] = {}
        self._order: list[str] = []
        self._next = 0  # where the next round-robin search starts in _order
        self._latest: _Source | None = None
        self._closed = False
        self._callback_errors = 0
        self._edits = 0

        self._gen_lock = threading.Lock()
        self._backend: Backend | None = None
        self._describe_gen: Generator | None = None
        self._ask_gen: Generator | None = None
        self._describer: Describer | None = None
        self._desc_lock = threading.Lock()
        self._desc_requested = 0
        self._desc_delivered = 0
        if config.describe:
            self._describe_gen = Generator(self._open_backend(), max_tokens=config.max_tokens)
            self._refresh_names()
            self._describer = Describer(
                self._describe_gen,
                memory,
                every=config.describe_every,
                on_result=self._described,
                max_concepts=config.max_concepts,
            )
        self._thread = threading.Thread(target=self._loop, name="rap-edge-live", daemon=True)
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the runtime."""
        self.close()

    @property
    def config(self) -> LiveConfig:
        """The settings in use."""
        return self._config

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the processing thread, the describer and the backend's process.

        Waiting frames are discarded; a frame being processed finishes; a description being
        generated gets what is left of ``timeout``, then its backend process is stopped (the
        template answers it). Safe to call twice. The memory stays open (the caller owns it).

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
        with self._gen_lock:
            backend, self._backend = self._backend, None
        close = getattr(backend, "close", None)
        if callable(close):  # a ProcessBackend's child: a generation still running ends now
            try:
                close()
            except Exception:
                log.warning("closing the generation backend failed", exc_info=True)
        if describer is not None:
            try:
                describer.worker.close()  # ends at once: nothing is queued or running now
            except RuntimeError:  # close() called from on_description: that thread ends next
                log.warning("rap-edge live runtime: closed from its own generation thread")
        if not ok:
            log.warning("rap-edge live runtime: a thread did not stop within %.1f s", timeout)
        return ok

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

    def _pipeline(self, track: bool) -> Pipeline:
        cfg = self._config
        return Pipeline(
            self.models,
            self.memory,
            thresholds=self._thresholds,
            config=self._pipeline_config(cfg, track=track),
            objects=self.objects,
        )

    @staticmethod
    def _pipeline_config(cfg: LiveConfig, *, track: bool) -> PipelineConfig:
        return PipelineConfig(
            k=cfg.top_k, track=track, embed_every=cfg.embed_every, tiles=cfg.tiles
        )

    def _handle(self, st: _Source, frame: _Frame) -> None:
        try:
            with self._work:
                if st.pipeline is None:
                    st.pipeline = self._pipeline(self._config.track)
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
            rid = describer.offer(result, source=st.name, tag=(st.name, result.index, meta))
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

    def _open_backend(self) -> Backend:
        with self._gen_lock:
            if self._backend is None:
                cfg = self._config
                self._backend, note = open_backend(
                    cfg.backend,
                    None if cfg.llm is None else Path(cfg.llm),
                    provider=cfg.llm_provider,
                    threads=cfg.llm_threads,
                    isolate=True,
                )
                log.info("rap-edge live runtime: generation by %s", note)
            return self._backend

    def _refresh_names(self) -> None:
        """Tell the faithful-name guard the memory's current names (after each edit)."""
        if self._describe_gen is None and self._ask_gen is None:
            return
        names = memory_names(self.memory)
        for gen in (self._describe_gen, self._ask_gen):
            if gen is not None:
                gen.known_names = list(names)

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
        if image is not None:
            # A pipeline of its own: nothing shared with the streams but the models and memory.
            result = self._pipeline(track=False).process(
                _check_image(image, "image"), source="ask"
            )
        else:
            with self._cond:
                if source is not None:
                    st = self._sources.get(source)
                    if st is None or st.last is None:
                        msg = f"no frame of source {source!r} has been processed yet"
                        raise InvalidInputError(msg)
                elif (st := self._latest) is None or st.last is None:
                    msg = "no frame has been processed yet (submit one, or give an image)"
                    raise InvalidInputError(msg)
                result = st.last[0]
        prompt = frame_prompt(
            result, self.memory, question, max_concepts=self._config.max_concepts
        )
        gen = self._ask_gen
        if gen is None:
            gen = Generator(self._open_backend(), max_tokens=self._config.max_tokens)
            with self._gen_lock:
                if self._ask_gen is None:
                    self._ask_gen = gen
                gen = self._ask_gen
            self._refresh_names()
        return LiveAnswer(gen.answer(prompt), result)

    # -- settings ----------------------------------------------------------------------------

    def set_config(self, **changes: Any) -> LiveConfig:  # noqa: ANN401 - checked by LiveConfig
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
        names = {f.name for f in fields(LiveConfig)}
        unknown = sorted(set(changes) - names)
        if unknown:
            msg = f"unknown setting(s): {', '.join(unknown)}"
            raise InvalidInputError(msg)
        fixed = sorted(set(changes) - RUNTIME_FIELDS)
        if fixed:
            msg = (
                f"{', '.join(fixed)} cannot change while running (create a new runtime); "
                f"changeable: {', '.join(sorted(RUNTIME_FIELDS))}"
            )
            raise InvalidInputError(msg)
        with self._work:
            new = replace(self._config, **changes)
            new.check()
            old, self._config = self._config, new
            self._apply_thresholds(new)
            for st in list(self._sources.values()):
                if st.pipeline is not None:
                    st.pipeline.config = self._pipeline_config(new, track=new.track)
            decisions = ("top_k", "margin", "face_threshold", "object_threshold")
            if any(getattr(old, k) != getattr(new, k) for k in decisions):
                self._forget_decisions()
        describer = self._describer
        if describer is not None:
            describer.every = new.describe_every
            describer.max_concepts = new.max_concepts
        return new

    def _apply_thresholds(self, cfg: LiveConfig) -> None:
        values, origin, margin = self._base
        th = self._thresholds
        th.margin = margin if cfg.margin is None else float(cfg.margin)
        encoders = [(self.models.encoder_id, cfg.face_threshold)]
        if self.objects is not None:
            encoders.append((self.objects.encoder_id, cfg.object_threshold))
        for enc, value in encoders:
            if value is None:
                th.values[enc], th.origin[enc] = values[enc], origin[enc]
            else:
                th.values[enc], th.origin[enc] = float(value), LIVE_ORIGIN

    def _forget_decisions(self) -> None:
        """Make every stream decide afresh in its next frame (hold ``_work``).

        Tracks keep their ids and embeddings; only the identity votes, taken against the
        memory or settings as they were, are dropped, as are the repeated object results.
        """
        for st in list(self._sources.values()):
            pipe = st.pipeline
            if pipe is None:
                continue
            pipe.forget_decisions()

    # -- memory edits ------------------------------------------------------------------------

    def list_concepts(self, category: str = "") -> list[Concept]:
        """The memory's concepts (of ``category`` when given), sorted by name."""
        return self.memory.list_concepts(category=category or None)

    def get_concept(self, ref: str) -> Concept:
        """The concept with this id or name.

        Raises:
            ConceptNotFoundError: if there is none.
        """
        return self.memory.get(ref)

    def add_concept(
        self,
        name: str,
        category: str,
        *,
        info: str = "",
        aliases: Sequence[str] = (),
        images: Sequence[npt.NDArray[np.uint8]] = (),
    ) -> Concept:
        """Add a concept and embed its images now: the next frame can name it.

        Images of a face category (``person``, ``face``, ...) must each show a face (the
        largest one is enrolled); other categories' images are embedded whole by the object
        embedder when objects are on (else they wait, unembedded, for ``memory embed``).

        Args:
            name: Unique name.
            category: ``person``, ``dog``, ``mug``, ...
            info: Free text about it.
            aliases: Other names.
            images: BGR uint8 photos (stored as PNG).

        Raises:
            InvalidInputError: a bad field or image, or a face image without a face. Nothing
                is added then.
            ConflictError: the name is taken.
        """
        imgs = _check_images(images)
        with self._edit:
            face = isinstance(category, str) and not is_object_category(category)
            if face:
                self._require_faces(imgs, name)
            with tempfile.TemporaryDirectory(prefix="rap-edge-live-") as tmp:
                files = self._write_pngs(imgs, Path(tmp), name)
                concept = self.memory.add(
                    name, images=files, category=category, info=info, aliases=aliases
                )
            try:
                self._embed()
            except BaseException:
                with contextlib.suppress(RapEdgeError):
                    self.memory.remove(concept.id)
                raise
            self._edited()
            return self.memory.get(concept.id)

    def update_concept(  # noqa: PLR0913
        self,
        ref: str,
        *,
        name: str | None = None,
        category: str | None = None,
        info: str | None = None,
        aliases: Sequence[str] | None = None,
        add_images: Sequence[npt.NDArray[np.uint8]] = (),
    ) -> Concept:
        """Rename a concept, change its category, info or aliases, or add images.

        None leaves a field as it is. Added images are embedded now; a change into a face
        category requires a face in every image (old and new).

        Raises:
            ConceptNotFoundError: no such concept.
            InvalidInputError: a bad field or image, or a face image without a face (nothing
                changes then).
            ConflictError: the new name is taken, or an image is already the concept's.
        """
        imgs = _check_images(add_images)
        with self._edit:
            old = self.memory.get(ref)
            new_category = old.category if category is None else category
            face = isinstance(new_category, str) and not is_object_category(new_category)
            if face:
                check = list(imgs)
                if is_object_category(old.category):  # becomes a face concept
                    check += self._stored_images(old)
                self._require_faces(check, old.name)
            added: list[int] = []
            updated = False
            try:
                concept = old
                if any(v is not None for v in (name, category, info, aliases)):
                    concept = self.memory.update(
                        old.id, name=name, category=category, info=info, aliases=aliases
                    )
                    updated = True
                with tempfile.TemporaryDirectory(prefix="rap-edge-live-") as tmp:
                    for path in self._write_pngs(imgs, Path(tmp), concept.name):
                        added.append(self.memory.add_image(old.id, path).id)
                self._embed()
            except BaseException:
                self._undo_update(old, added, restore=updated)
                raise
            self._edited()
            return self.memory.get(old.id)

    def remove_concept(self, ref: str) -> Concept:
        """Forget a concept (row, images, vectors); no later frame names it.

        Returns:
            The concept as it was.

        Raises:
            ConceptNotFoundError: no such concept.
        """
        with self._edit:
            concept = self.memory.get(ref)
            self.memory.remove(concept.id)
            self._edited()
            return concept

    def _undo_update(self, old: Concept, added: list[int], *, restore: bool) -> None:
        """Best effort: take back the images added and the fields changed by a failed edit."""
        try:
            for image_id in added:
                self.memory.remove_image(image_id)
            if restore:
                self.memory.update(
                    old.id,
                    name=old.name,
                    category=old.category,
                    info=old.info,
                    aliases=old.aliases,
                )
        except RapEdgeError:
            log.warning(
                "rap-edge live runtime: undoing a failed edit of %s failed", old.id, exc_info=True
            )

    def _edited(self) -> None:
        with self._work:
            self._forget_decisions()
        with self._cond:
            self._edits += 1
        self._refresh_names()

    def _require_faces(self, images: Sequence[npt.NDArray[np.uint8]], name: object) -> None:
        """Every image must show a face (the face embedder would use the whole image)."""
        missing = [i + 1 for i, img in enumerate(images) if not self.models.detect(img)]
        if missing:
            which = ", ".join(f"#{i}" for i in missing)
            msg = (
                f"{name!r}: no face found in image {which}; a face concept needs photos "
                "that show the face (nothing was changed)"
            )
            raise InvalidInputError(msg)

    @staticmethod
    def _stored_images(concept: Concept) -> list[npt.NDArray[np.uint8]]:
        import cv2

        out = []
        for rec in concept.images:
            img = cv2.imread(str(rec.path), cv2.IMREAD_COLOR)
            if img is not None:  # a missing file is `memory verify`'s business
                out.append(np.asarray(img, dtype=np.uint8))
        return out

    @staticmethod
    def _write_pngs(
        images: Sequence[npt.NDArray[np.uint8]], folder: Path, name: object
    ) -> list[Path]:
        import cv2

        stem = "".join(ch if ch.isalnum() else "_" for ch in str(name))[:40] or "image"
        out = []
        for i, img in enumerate(images):
            ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
            if not ok:
                msg = f"image #{i + 1} could not be encoded as PNG"
                raise InvalidInputError(msg)
            path = folder / f"{stem}-{i + 1}.png"
            path.write_bytes(buf.tobytes())
            out.append(path)
        return out

    def _embed(self) -> None:
        """Embed every pending image: faces by the face path, objects by the object path."""
        embed_faces_in_memory(self.memory, FaceEmbedder(self.models))
        if self.objects is not None:
            embed_objects_in_memory(self.memory, ObjectEmbedder(self.objects))

    # -- counters ----------------------------------------------------------------------------

    def stats(self) -> LiveStats:
        """A snapshot of the counters."""
        with self._cond:
            sources = {
                st.name: SourceStats(
                    received=st.received,
                    processed=st.processed,
                    dropped=st.dropped,
                    errors=st.errors,
                    last_errors=tuple(st.last_errors),
                    last_frame=None if st.last is None else st.last[0].index,
                    last_ms=None if st.last is None else st.last[0].timings_ms.get("total"),
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
            generator=dict(self._describe_gen.stats) if self._describe_gen else {},
            ask_generator=dict(self._ask_gen.stats) if self._ask_gen else {},
        )
