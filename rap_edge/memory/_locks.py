"""Locks of the memory: readers share, one writer excludes (in-process and across processes)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from typing import TYPE_CHECKING

from rap_edge.errors import MemoryLockedError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class ReadWriteLock:
    """Many concurrent readers or one writer; waiting writers block new readers.

    Searches take the shared side, edits the exclusive side, so a USearch index is never read
    while it is being modified (USearch has open bugs with concurrent add and search).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """Hold the shared side."""
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """Hold the exclusive side."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class FileLock:
    """One writer at a time, in this process and across processes.

    An in-process re-entrant mutex plus an advisory ``flock`` on a file in the memory folder.
    The thread holding it may take it again (nested holds); other threads wait, like other
    processes do.
    """

    def __init__(self, path: Path, *, timeout_s: float) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._fd: int | None = None
        self._mutex = threading.RLock()
        self._depth = 0  # nesting of the owning thread; only touched while holding _mutex

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def _locked_error(self) -> MemoryLockedError:
        msg = (
            f"memory is locked by another writer ({self._path}) for more than "
            f"{self._timeout_s:g} s; retry, or stop the other process"
        )
        return MemoryLockedError(msg)

    @contextlib.contextmanager
    def hold(self, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the lock; yields False (without holding it) if ``blocking`` is off and it is taken.

        Raises:
            MemoryLockedError: if another writer keeps it longer than the timeout.
        """
        deadline = time.monotonic() + self._timeout_s
        got = (
            self._mutex.acquire(timeout=self._timeout_s)
            if blocking
            else self._mutex.acquire(blocking=False)
        )
        if not got:
            if not blocking:
                yield False
                return
            raise self._locked_error()
        try:
            if self._depth == 0:
                fd = self._open()
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if not blocking:
                            yield False
                            return
                        if time.monotonic() >= deadline:
                            raise self._locked_error() from None
                        time.sleep(0.01)
            self._depth += 1
            try:
                yield True
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def close(self) -> None:
        """Release the file descriptor."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
