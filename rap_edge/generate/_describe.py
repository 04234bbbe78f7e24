"""From a processed frame to a personalised description, off the frame path.

:func:`frame_prompt` turns a :class:`~rap_edge.pipeline.FrameResult` into the RAP prompt (its
known concepts with info, place in the frame and reference image, plus concepts the question
names). :class:`Describer` decides when a frame deserves a description (the recognised set
changed, a question arrived, or the configured period passed) and hands it to a
:class:`~rap_edge.generate.GenerationWorker`, so the frame loop never waits for the model.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from rap_edge.generate._worker import GenerationWorker

if TYPE_CHECKING:
    from collections.abc import Callable

    from rap_edge.generate._prompt import Prompt
    from rap_edge.generate._worker import Event, GenerationResult, Generator
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FrameResult

__all__ = ["DESCRIBE", "Describer", "frame_prompt"]

DESCRIBE = "Describe what you see."


def frame_prompt(  # noqa: PLR0913
    result: FrameResult,
    memory: Memory | None,
    question: str,
    *,
    max_concepts: int = 5,
    names_from_question: bool = True,
    multimodal: bool = False,
    query_image: object = None,
) -> Prompt:
    """The RAP prompt for a processed frame.

    Args:
        result: The pipeline's output for the frame.
        memory: Where concept info and reference images come from (None: names only).
        question: The user's question (or :data:`DESCRIBE`).
        max_concepts: K, the most concepts in the prompt (lowest scores dropped first).
        names_from_question: Also retrieve concepts the question names (text retrieval; it
            scans every concept's names, so the frame loop turns it off).
        multimodal: The vision-language layout (query image, then reference images).
        query_image: Path of the frame as an image file (vision-language layout).
    """
    from pathlib import Path

    from rap_edge.generate._prompt import ConceptRef, build_prompt, where
    from rap_edge.pipeline import mentioned_concepts

    refs: dict[str, ConceptRef] = {}
    unknown = 0
    for r in result.recognitions:
        if r.decision != "known" or r.concept_id is None:
            unknown += r.kind == "face"
            continue
        info, category, image = "", "", None
        if memory is not None:
            try:
                c = memory.get(r.concept_id)
            except KeyError:  # removed since the frame was processed
                continue
            info, category = c.info, c.category
            image = c.images[0].path if c.images else None
        ref = ConceptRef(
            r.name or "",
            category,
            info,
            r.score or 0.0,
            where(r.box, result.width, result.height),
            image,
        )
        if r.concept_id not in refs or ref.score > refs[r.concept_id].score:
            refs[r.concept_id] = ref
    asked = (
        [c.name for c in mentioned_concepts(question, memory)]
        if memory and names_from_question
        else []
    )
    return build_prompt(
        question,
        list(refs.values()),
        max_concepts=max_concepts,
        unknown=unknown,
        asked=asked,
        multimodal=multimodal,
        query_image=Path(str(query_image)) if query_image else None,
    )


class Describer:
    """Requests descriptions for frames on a latest-first worker; never blocks the caller.

    Args:
        generator: The guarded backend.
        memory: The live memory (concept info; may be None).
        every: Also describe every ``every`` seconds while the set is unchanged (0: never).
        on_result: Called on the worker thread as ``on_result(tag, result)``; the tag is what
            :meth:`offer` or :meth:`ask` was given (default: the frame's index).
        on_event: Streaming events (``token``/``reset``/``done``) for every request.
        max_concepts: K for the prompt.
    """

    def __init__(  # noqa: PLR0913
        self,
        generator: Generator,
        memory: Memory | None,
        *,
        every: float = 0.0,
        on_result: Callable[[Any, GenerationResult], None] | None = None,
        on_event: Event | None = None,
        max_concepts: int = 5,
    ) -> None:
        self.generator = generator
        self.memory = memory
        self.every = every
        self.on_result = on_result
        self.on_event = on_event
        self.max_concepts = max_concepts
        # Per source: the recognised set last described and when (each camera on its own).
        self._seen: dict[str, tuple[tuple[str, ...], float]] = {}
        self._tags: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.worker = GenerationWorker(generator, on_result=self._done)

    @staticmethod
    def key(result: FrameResult) -> tuple[str, ...]:
        """What the description depends on: the recognised concepts and unknown faces."""
        return tuple(sorted(r.concept_id or r.decision for r in result.recognitions))

    def offer(
        self,
        result: FrameResult,
        *,
        source: str = "",
        tag: Any = None,  # noqa: ANN401
        every: float | None = None,
    ) -> int | None:
        """Request a description if ``source``'s recognised set changed or the period passed.

        Args:
            result: The processed frame.
            source: Which camera it came from (change detection is per source).
            tag: Handed back to ``on_result`` with the answer (default: the frame's index).
            every: This source's period (None: :attr:`every`).

        Returns:
            The request id, or None when no description was needed.
        """
        key = self.key(result)
        now = time.monotonic()
        period = self.every if every is None else every
        with self._lock:
            last_key, last_time = self._seen.get(source, (None, 0.0))
            if key == last_key and not (period and now - last_time >= period):
                return None
            self._seen[source] = (key, now)
        # On the frame thread: no text retrieval (it would scan every concept for names).
        return self._submit(
            frame_prompt(
                result,
                self.memory,
                DESCRIBE,
                max_concepts=self.max_concepts,
                names_from_question=False,
            ),
            result.index if tag is None else tag,
        )

    def ask(self, result: FrameResult, question: str, *, tag: Any = None) -> int:  # noqa: ANN401
        """Request an answer to ``question`` about ``result`` (always submitted)."""
        return self._submit(
            frame_prompt(result, self.memory, question, max_concepts=self.max_concepts),
            result.index if tag is None else tag,
        )

    def _submit(self, prompt: Prompt, tag: Any) -> int:  # noqa: ANN401
        with self._lock:  # the worker may finish before submit returns
            rid = self.worker.submit(prompt, self.on_event)
            self._tags[rid] = tag
        return rid

    def _done(self, rid: int, answer: GenerationResult) -> None:
        with self._lock:
            tag = self._tags.pop(rid, None)
            for old in [r for r in self._tags if r < rid]:  # replaced while queued
                del self._tags[old]
        if self.on_result is not None:
            self.on_result(tag, answer)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the request in progress (up to ``timeout`` s), stop the worker and backend."""
        self.worker.wait_idle(timeout)
        self.worker.close()
        self.generator.backend.close()  # a ProcessBackend's child process
