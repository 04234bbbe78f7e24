"""A model backend in a child process, so that it cannot stall the camera loop.

ONNX Runtime GenAI holds Python's GIL while it processes a prompt (measured: a 300-token
prompt kept every other thread of the process waiting for 1.2 s), so a worker *thread* is not
enough to keep a frame loop running. :class:`ProcessBackend` opens the backend in a spawned
child process and streams its pieces back over a pipe; the parent only waits on the pipe, which
releases the GIL. A crashed or hung child is reported as an error (the guard then falls back to
the template), never as a hang.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from typing import TYPE_CHECKING, Any

from rap_edge.errors import InvalidInputError, ModelStoreError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.connection import Connection
    from pathlib import Path

    from rap_edge.generate._prompt import Prompt

__all__ = ["ProcessBackend"]


def _serve(conn: Connection, name: str, model: str | None, options: dict[str, Any]) -> None:
    """The child: open the backend, then answer ``("generate", prompt, max_tokens)``."""
    from rap_edge.generate._backends import open_backend

    try:
        backend, note = open_backend(name, model, **options)
    except Exception as err:  # noqa: BLE001 - every failure goes back to the parent
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", backend.name, note))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent went away
            return
        if msg[0] != "generate":
            return
        try:
            for piece in backend.generate(msg[1], max_tokens=msg[2]):
                conn.send(("piece", piece))
            conn.send(("end", None))
        except Exception as err:  # noqa: BLE001
            conn.send(("error", f"{type(err).__name__}: {err}"))


class ProcessBackend:
    """``open_backend(name, model, ...)`` run in a child process; same interface as a backend.

    Args:
        name: ``ortgenai`` or ``transformers`` (or ``auto``).
        model: The model folder (default: the store's).
        start_timeout: Seconds to wait for the child to load the model.
        token_timeout: Seconds without a piece after which the child counts as hung.
        **options: ``provider``, ``store``, ``threads`` for :func:`open_backend`.
    """

    def __init__(
        self,
        name: str,
        model: str | Path | None = None,
        *,
        start_timeout: float = 300.0,
        token_timeout: float = 120.0,
        **options: Any,  # noqa: ANN401
    ) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that has threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve,
            name="rap-edge-llm",
            daemon=True,
            args=(child, name, None if model is None else str(model), options),
        )
        self._proc.start()
        child.close()
        self.token_timeout = token_timeout
        self._lock = threading.Lock()
        msg = self._recv(start_timeout)
        if msg[0] != "ready":
            self.close()
            raise ModelStoreError(f"the {name} backend did not start: {msg[1]}")
        self.name: str = msg[1]
        self.note: str = f"{msg[2]}, in child process {self._proc.pid}"

    def _recv(self, timeout: float) -> tuple[Any, ...]:
        if not self._conn.poll(timeout):
            self._proc.kill()
            raise ModelStoreError(
                f"the model process sent nothing for {timeout:.0f} s; stopped it"
            )
        try:
            msg: tuple[Any, ...] = self._conn.recv()
        except (EOFError, OSError) as err:
            raise ModelStoreError(
                f"the model process died (exit code {self._proc.exitcode})"
            ) from err
        return msg

    def generate(self, prompt: Prompt, *, max_tokens: int = 256) -> Iterator[str]:
        """Stream the answer from the child process."""
        with self._lock:
            if not self._proc.is_alive():
                raise ModelStoreError(
                    f"the model process has stopped (exit code {self._proc.exitcode})"
                )
            self._conn.send(("generate", prompt, max_tokens))
            finished = False
            try:
                while True:
                    kind, value = self._recv(self.token_timeout)
                    if kind == "end":
                        finished = True
                        return
                    if kind == "error":
                        finished = True
                        raise InvalidInputError(f"the model process failed: {value}")
                    yield value
            finally:
                while not finished and self._proc.is_alive():  # an abandoned stream: drain it
                    kind, _ = self._recv(self.token_timeout)
                    finished = kind in {"end", "error"}

    def close(self) -> None:
        """Stop the child process."""
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(("close",))
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()
