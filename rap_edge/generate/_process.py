"""A model backend in a child process, so that it cannot stall the camera loop.

ONNX Runtime GenAI holds Python's GIL while it processes a prompt (measured: a 300-token
prompt kept every other thread of the process waiting for 1.2 s), so a worker *thread* is not
enough to keep a frame loop running. :class:`ProcessBackend` opens the backend in a spawned
child process and streams its pieces back over a pipe; the parent only waits on the pipe, which
releases the GIL. A crashed or hung child is reported as an error (the guard then falls back to
the template), never as a hang: :class:`~rap_edge.errors.BackendError` (an environment error,
exit code 2) once it has started, :class:`~rap_edge.errors.ModelStoreError` if it never did
(so ``auto`` still falls back to the template). An error the child's backend raised while
answering comes back as the same rap-edge error class (other exceptions as ``BackendError``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from typing import TYPE_CHECKING, Any

from rap_edge import errors
from rap_edge.errors import BackendError, ModelStoreError, RapEdgeError

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
        conn.send(("error", f"{type(err).__name__}: {err}", type(err).__name__))
        return
    conn.send(("ready", backend.name, note))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent went away
            return
        if msg[0] == "stop":  # came after the answer it was meant to stop had ended
            continue
        if msg[0] != "generate":
            backend.close()
            return
        try:
            stream = backend.generate(msg[1], max_tokens=msg[2])
            for piece in stream:
                conn.send(("piece", piece))
                if conn.poll(0):  # "stop": the reader has its answer ("close": shut down)
                    command = conn.recv()[0]
                    stream.close()  # type: ignore[attr-defined]
                    if command != "stop":
                        conn.send(("end", None))
                        backend.close()
                        return
                    break
            conn.send(("end", None))
        except Exception as err:  # noqa: BLE001
            conn.send(("error", f"{type(err).__name__}: {err}", type(err).__name__))


def _child_error(text: str, type_name: str) -> RapEdgeError:
    """The parent's error for one that the child's backend raised while answering.

    The same rap-edge class if it was one (an input error stays an input error), else
    :class:`BackendError`.
    """
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, RapEdgeError):
        return cls(f"the model process failed: {text}")
    return BackendError(f"the model process failed: {text}")


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
        try:
            msg = self._recv(start_timeout)
        except BackendError as err:  # died or hung while loading: the model cannot be used
            self.close()
            raise ModelStoreError(f"the {name} backend did not start: {err}") from err
        if msg[0] != "ready":
            self.close()
            raise ModelStoreError(f"the {name} backend did not start: {msg[1]}")
        self.name: str = msg[1]
        self.note: str = f"{msg[2]}, in child process {self._proc.pid}"

    def _recv(self, timeout: float) -> tuple[Any, ...]:
        """The child's next message; BackendError if it is dead or sends nothing in time."""
        try:
            ready = self._conn.poll(timeout)
        except (EOFError, OSError) as err:
            raise self._died() from err
        if not ready:
            self._proc.kill()
            msg = f"the model process sent nothing for {timeout:.0f} s; stopped it"
            raise BackendError(msg)
        try:
            got: tuple[Any, ...] = self._conn.recv()
        except (EOFError, OSError) as err:
            raise self._died() from err
        return got

    def _died(self) -> BackendError:
        self._proc.join(1)  # reap it, so that its exit code is known
        code = self._proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        state = "has stopped" if code == 0 else "died"  # 0: closed, or it returned
        return BackendError(f"the model process {state} ({how})")

    def generate(self, prompt: Prompt, *, max_tokens: int = 256) -> Iterator[str]:
        """Stream the answer from the child process."""
        with self._lock:
            if not self._proc.is_alive():
                raise self._died()
            try:
                self._conn.send(("generate", prompt, max_tokens))
            except (OSError, ValueError) as err:  # the pipe broke: the child is gone
                raise self._died() from err
            finished = False
            try:
                while True:
                    msg = self._recv(self.token_timeout)
                    if msg[0] == "end":
                        finished = True
                        return
                    if msg[0] == "error":
                        finished = True
                        raise _child_error(msg[1], msg[2])
                    yield msg[1]
            finally:
                if not finished:  # the reader stopped early: stop the model too
                    with contextlib.suppress(OSError, ValueError):
                        self._conn.send(("stop",))
                while not finished and self._proc.is_alive():  # an abandoned stream: drain it
                    finished = self._recv(self.token_timeout)[0] in {"end", "error"}

    def close(self) -> None:
        """Stop the child process."""
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(("close",))
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()
