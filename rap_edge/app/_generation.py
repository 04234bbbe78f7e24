"""The generation backend of a session, opened on first use and shared by its generators.

Questions (``ask``) and descriptions (``describe``) each get a guarded
:class:`~rap_edge.generate.Generator` over one backend (a model answers one request at a
time); the faithful-name guard learns the memory's names again after every edit.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Callable

    from rap_edge.app._settings import Settings
    from rap_edge.generate import Backend, Generator
    from rap_edge.memory import Memory

__all__ = ["Generation"]

log = logging.getLogger("rap_edge")


class Generation:
    """One backend, opened on first use, and a generator per purpose.

    Args:
        settings: Returns the session's current settings (backend options, max tokens).
        memory: The memory whose names the guard protects (None: no names).
        isolate: Run a model backend in a child process (next to a frame loop).
    """

    def __init__(
        self, settings: Callable[[], Settings], memory: Memory | None, *, isolate: bool
    ) -> None:
        self._settings = settings
        self.memory = memory
        self._isolate = isolate
        self._gen_lock = threading.Lock()
        self._backend: Backend | None = None
        self._backend_note = ""
        self._generators: dict[str, Generator] = {}
        self.closed = False

    def close_backend(self) -> None:
        """Stop the backend (a later question or description opens it again)."""
        with self._gen_lock:
            backend, self._backend = self._backend, None
            self._generators.clear()
        if backend is not None:
            try:
                backend.close()
            except Exception:
                log.warning("closing the generation backend failed", exc_info=True)

    def backend(self) -> Backend:
        """The generation backend, opened on first use (shared by questions and descriptions).

        Raises:
            ModelStoreError: a named backend that cannot load.
        """
        from rap_edge.generate import open_backend

        if self.closed:  # its backend is stopped; opening another would leak it
            msg = "the session is closed"
            raise InvalidInputError(msg)
        with self._gen_lock:
            if self._backend is None:
                s = self._settings()
                self._backend, self._backend_note = open_backend(
                    s.backend,
                    s.llm,
                    provider=s.llm_provider,
                    threads=s.llm_threads,
                    isolate=self._isolate,
                    vision_onnx=s.vision_onnx,
                )
                log.info("generation by %s", self._backend_note)
            return self._backend

    @property
    def backend_note(self) -> str:
        """One line saying which backend writes the words (empty before it is opened)."""
        return self._backend_note

    def generator(self, purpose: str = "ask") -> Generator:
        """The guarded generator for ``purpose`` (``ask`` or ``describe``), on first use."""
        from rap_edge.generate import Generator

        backend = self.backend()
        with self._gen_lock:
            gen = self._generators.get(purpose)
            if gen is None:
                gen = Generator(backend, max_tokens=self._settings().max_tokens)
                self._generators[purpose] = gen
        self.refresh_names()
        return gen

    def generator_stats(self, purpose: str) -> dict[str, int]:
        """A generator's counters (empty before its first use)."""
        gen = self._generators.get(purpose)
        return dict(gen.stats) if gen is not None else {}

    def refresh_names(self) -> None:
        """Tell the faithful-name guard the memory's current names (after each edit)."""
        from rap_edge.generate import memory_names

        if not self._generators:
            return
        names = memory_names(self.memory)
        for gen in list(self._generators.values()):
            gen.known_names = list(names)
