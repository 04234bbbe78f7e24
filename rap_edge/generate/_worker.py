"""Generation off the frame path: the faithful-name guard, and a latest-first worker thread.

The frame loop calls :meth:`GenerationWorker.submit` and returns at once. A newer request
replaces an older one that is still queued (a slow model drops stale frames instead of building
a backlog). Text streams to the caller's callback as ``("token", piece)`` events; when the guard
rejects an answer it sends ``("reset", reason)`` before the retry, and ``("done", text)`` at the
end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from rap_edge.generate._ground import ground
from rap_edge.generate._guard import unfaithful_names
from rap_edge.generate._stop import MAX_SENTENCES, AnswerStop
from rap_edge.generate._template import TemplateBackend

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from rap_edge.generate._prompt import Prompt

__all__ = ["Backend", "GenerationResult", "GenerationWorker", "Generator"]

Event = Callable[[str, str], None]


class Backend(Protocol):
    """A text generator: ``generate`` streams pieces of the answer to a prompt.

    Every backend has ``close``, so its owner releases it without asking what it is; it is a
    no-op where nothing outlives the object (an in-process model is freed with it) and stops the
    child process of a :class:`~rap_edge.generate._process.ProcessBackend`.
    """

    name: str

    def generate(self, prompt: Prompt, *, max_tokens: int = 256) -> Iterator[str]:
        """Stream the answer."""
        ...

    def close(self) -> None:
        """Release what the backend holds outside this object (processes, threads); idempotent."""
        ...


@dataclass
class GenerationResult:
    """One answer and how it was obtained."""

    text: str
    backend: str
    regenerated: bool = False
    fell_back: bool = False
    unfaithful: list[str] = field(default_factory=list)  # in the final text (should be none)
    rejected: list[str] = field(default_factory=list)  # names that caused a retry / fallback
    error: str | None = None  # the backend raised: the template answered instead
    first_token_ms: float | None = None
    total_ms: float = 0.0
    pieces: int = 0
    dropped: list[str] = field(default_factory=list)  # model sentences left out, and why
    stopped: str = ""  # why the model's answer ended: turn, repeat, loop, sentences or end


class Generator:
    """A backend behind the faithful-name guard, with the template as the last resort."""

    def __init__(
        self,
        backend: Backend,
        *,
        known_names: Iterable[str] = (),
        max_tokens: int = 128,
        max_sentences: int = MAX_SENTENCES,
        grounded: bool = True,
    ) -> None:
        self.backend = backend
        self.fallback = TemplateBackend()
        self.known_names = list(known_names)
        self.max_tokens = max_tokens
        # A model's answer ends after this many sentences, at a repeat, a loop or a new turn
        # (0: no stopping rules at all, the raw decoding, kept for measurement).
        self.max_sentences = max_sentences
        # The answer starts with the scene's facts from the recognitions; the model's sentences
        # follow when they claim no relation the info lacks (see rap_edge.generate._ground).
        self.grounded = grounded
        self.stats = {"requests": 0, "regenerated": 0, "fell_back": 0, "failed": 0}

    def _run(
        self,
        backend: Backend,
        prompt: Prompt,
        on_event: Event | None,
        result: GenerationResult,
        start: float,
    ) -> str:
        """One attempt; a model's stream ends where :class:`AnswerStop` says."""
        raw = isinstance(backend, TemplateBackend) or not self.max_sentences
        stop = None if raw else AnswerStop(self.max_sentences)
        pieces = []
        stream = backend.generate(prompt, max_tokens=self.max_tokens)
        try:
            for piece in stream:
                if piece.strip() and not piece.strip().strip("<>"):
                    continue  # small models echo the prompt's <<< >>> data delimiters
                if result.first_token_ms is None:
                    result.first_token_ms = (time.perf_counter() - start) * 1000
                result.pieces += 1
                shown = piece if stop is None else stop.feed(piece)
                if shown:
                    pieces.append(shown)
                    if on_event is not None:
                        on_event("token", shown)
                if stop is not None and stop.done:
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # stops the model between two tokens
        if stop is not None:
            tail = stop.finish()
            if tail and on_event is not None:
                on_event("token", tail)
            result.stopped = stop.reason
            return stop.text
        return "".join(pieces).strip()

    def answer(self, prompt: Prompt, on_event: Event | None = None) -> GenerationResult:
        """Generate, check names, retry once with a stricter prompt, else use the template."""
        start = time.perf_counter()
        self.stats["requests"] += 1
        result = GenerationResult(text="", backend=self.backend.name)
        context = " ".join([prompt.question, *(c.info for c in prompt.concepts)])
        in_view = {c.name.lower() for c in prompt.concepts}
        absent = [a for a in prompt.asked if a.lower() not in in_view]
        try:
            text = self._run(self.backend, prompt, on_event, result, start)
        except Exception as err:  # noqa: BLE001 - a failing model must not end the stream
            return self._failed(prompt, on_event, result, start, err)
        bad = unfaithful_names(text, prompt.allowed_names, self.known_names, context, absent)
        if bad and not isinstance(self.backend, TemplateBackend):
            self.stats["regenerated"] += 1
            result.regenerated = True
            result.rejected = list(bad)
            if on_event is not None:
                on_event("reset", f"names not retrieved: {', '.join(bad)}; retrying")
            allowed = ", ".join(prompt.allowed_names) or "none"
            strict = replace(prompt, text=f"{prompt.text}\nUse no name except: {allowed}.")
            try:
                text = self._run(self.backend, strict, on_event, result, start)
            except Exception as err:  # noqa: BLE001
                return self._failed(prompt, on_event, result, start, err)
            bad = unfaithful_names(text, prompt.allowed_names, self.known_names, context, absent)
            if bad:
                self.stats["fell_back"] += 1
                result.fell_back = True
                result.rejected += [b for b in bad if b not in result.rejected]
                result.backend = self.fallback.name
                if on_event is not None:
                    on_event("reset", f"names not retrieved: {', '.join(bad)}; template")
                text = self._run(self.fallback, prompt, on_event, result, start)
                bad = unfaithful_names(
                    text, prompt.allowed_names, self.known_names, context, absent
                )
        if self.grounded and result.backend != self.fallback.name:
            grounded, result.dropped = ground(text, prompt, max_sentences=self.max_sentences or 2)
            if grounded != text and on_event is not None:
                on_event("reset", "grounded: the scene's facts, then what the info supports")
                on_event("token", grounded)
            text = grounded
            bad = unfaithful_names(text, prompt.allowed_names, self.known_names, context, absent)
        result.unfaithful = bad
        result.text = text
        result.total_ms = (time.perf_counter() - start) * 1000
        if on_event is not None:
            on_event("done", text)
        return result

    def _failed(
        self,
        prompt: Prompt,
        on_event: Event | None,
        result: GenerationResult,
        start: float,
        err: Exception,
    ) -> GenerationResult:
        """The model failed: say why, answer with the template."""
        self.stats["failed"] += 1
        result.error = f"{type(err).__name__}: {err}"
        result.fell_back = True
        result.backend = self.fallback.name
        if on_event is not None:
            on_event("reset", f"{self.backend.name} failed ({result.error}); template")
        result.text = self._run(self.fallback, prompt, on_event, result, start)
        result.total_ms = (time.perf_counter() - start) * 1000
        if on_event is not None:
            on_event("done", result.text)
        return result


class GenerationWorker:
    """Runs a :class:`Generator` on a thread; the caller never waits."""

    def __init__(
        self,
        generator: Generator,
        on_result: Callable[[int, GenerationResult], None] | None = None,
    ) -> None:
        self.generator = generator
        self.on_result = on_result
        self.replaced = 0
        self.done = 0
        self._pending: tuple[int, Prompt, Event | None] | None = None
        self._next = 1
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="rap-edge-generate", daemon=True)
        self._thread.start()

    def submit(self, prompt: Prompt, on_event: Event | None = None) -> int:
        """Queue ``prompt`` (replacing a queued one); return its request id. Never blocks."""
        with self._cond:
            if self._pending is not None:
                self.replaced += 1
            rid = self._next
            self._next += 1
            self._pending = (rid, prompt, on_event)
            self._cond.notify()
        return rid

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed and self._pending is None:
                    return
                assert self._pending is not None  # noqa: S101 - loop condition
                rid, prompt, on_event = self._pending
                self._pending = None
                self._busy = True
            try:
                result = self.generator.answer(prompt, on_event)
            finally:
                with self._cond:
                    self._busy = False
                    self.done += 1
                    self._cond.notify_all()
            if self.on_result is not None:
                self.on_result(rid, result)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or running (for shutdown and tests)."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Finish the running request, drop a queued one, stop the thread."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
        self._thread.join(timeout=30)
