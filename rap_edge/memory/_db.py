"""The memory's SQLite database: one connection per thread, and errors that name the memory."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from rap_edge.errors import (
    ConflictError,
    MemoryLockedError,
    MemoryReadOnlyError,
    RapEdgeError,
    SchemaError,
    StoreError,
)
from rap_edge.memory import _schema

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["DB_NAME", "Database"]

DB_NAME = "memory.db"
_NEARLY_FULL = 1024 * 1024  # bytes: below this, SQLite's "disk I/O error" is a full disk


class Database:
    """Connections to ``memory.db`` in a memory folder (SQLite connections are per thread).

    Attributes:
        folder: The memory folder (named in error messages).
        path: The database file.
        readonly: Connections are opened read-only.
    """

    def __init__(self, folder: Path, *, readonly: bool, timeout_s: float) -> None:
        self.folder = folder
        self.path = folder / DB_NAME
        self.readonly = readonly
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self.closed = False

    def create(self, index_dtype: str) -> None:
        """Create the folder, its ``images`` and ``index`` sub-folders and the database."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            for sub in ("images", "index"):
                (self.folder / sub).mkdir(mode=0o700, exist_ok=True)
            if self.path.exists():
                return
            # Create the file ourselves so it is owner-only; SQLite gives its -wal and -shm
            # files the same permissions as the database.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as err:
            msg = f"cannot create a memory in {self.folder}: {err.strerror or err}"
            raise MemoryReadOnlyError(msg) from err
        with self.errors():
            conn = self.conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                _schema.create(conn, created_at=time.time())
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('index_dtype', ?)", (index_dtype,)
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        if self.closed:
            msg = f"memory {self.folder} is closed"
            raise StoreError(msg)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self.readonly:
            conn = self._connect_readonly()
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        if not self.readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: an acknowledged edit survives a power cut too, not only a process crash.
            conn.execute("PRAGMA synchronous = FULL")
            # Deleted rows (vectors of a forgotten concept) are overwritten with zeros.
            conn.execute("PRAGMA secure_delete = ON")
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection, also where SQLite cannot create its ``-shm`` file.

        A WAL database opened with ``mode=ro`` still needs a ``-shm`` file beside it. On a
        read-only folder (``chattr +i``, a read-only mount) with no ``-wal`` file, nothing can
        be writing it either, so it is opened ``immutable``: without the shared-memory index.
        With a ``-wal`` file that holds data, immutable would skip committed edits; that is
        refused with a message instead.
        """
        uri = f"file:{quote(str(self.path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as err:
            conn.close()
            if "unable to open" not in str(err) and "readonly" not in str(err):
                raise
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                msg = (
                    f"memory {self.folder} cannot be read: its folder is read-only and "
                    f"{wal.name} holds edits not yet in {self.path.name}; open it once where "
                    "it is writable"
                )
                raise MemoryReadOnlyError(msg) from err
            conn = sqlite3.connect(
                f"{uri}&immutable=1", uri=True, isolation_level=None, check_same_thread=False
            )
        return conn

    def close(self) -> None:
        """Close every thread's connection; later calls to :meth:`conn` raise."""
        self.closed = True
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()

    def disk_full(self, err: BaseException) -> str | None:
        """Why ``err`` means the disk is full, or None if it does not."""
        if isinstance(err, OSError) and err.errno in {errno.ENOSPC, errno.EDQUOT}:
            return f"the disk is full (no space left on device: {err.filename or self.folder})"
        if not isinstance(err, sqlite3.Error):
            return None
        text = str(err)
        if "disk is full" in text:
            return f"the disk is full ({text})"
        if "disk I/O error" in text:
            # SQLite reports a failed write of its -shm or -wal file as an I/O error.
            try:
                st = os.statvfs(self.folder)
            except OSError:
                return None
            free = st.f_bavail * st.f_frsize
            if free < _NEARLY_FULL:
                return f"the disk is full ({text}, {free} bytes free)"
        return None

    def raise_if_disk_full(self, err: BaseException, *, done: str) -> None:
        """Raise a :class:`StoreError` saying that nothing changed if the disk is full."""
        why = self.disk_full(err)
        if why is not None:
            msg = (
                f"memory {self.folder}: {why}; {done}, nothing changed. Free some space and retry"
            )
            raise StoreError(msg) from err

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Translate SQLite and OS errors into rap-edge errors naming the memory."""
        try:
            yield
        except RapEdgeError:
            raise
        except (sqlite3.Error, OSError) as err:
            self.raise_if_disk_full(err, done="the memory was left as it was")
            raise self._translated(err) from err

    def _translated(self, err: sqlite3.Error | OSError) -> RapEdgeError:
        """The rap-edge error for an SQLite or OS error."""
        if isinstance(err, sqlite3.OperationalError):
            text = str(err)
            if "locked" in text or "busy" in text:
                msg = (
                    f"memory {self.folder} is locked by another writer for more than "
                    f"{self._timeout_s:g} s; retry, or stop the other process"
                )
                return MemoryLockedError(msg)
            if "readonly" in text or "read-only" in text:
                return MemoryReadOnlyError(f"memory {self.folder} is read-only ({text})")
            if "unable to open" in text and not os.access(self.folder, os.W_OK):
                msg = f"memory {self.folder} is read-only: its folder cannot be written ({text})"
                return MemoryReadOnlyError(msg)
            return StoreError(f"memory {self.folder}: {text}")
        if isinstance(err, sqlite3.IntegrityError):
            msg = f"memory {self.folder}: the edit breaks a rule of the database ({err})"
            return ConflictError(msg)
        if isinstance(err, sqlite3.DatabaseError):
            return SchemaError(f"{self.path} is not a usable memory database ({err})")
        if isinstance(err, sqlite3.Error):
            return StoreError(f"memory {self.folder}: {err}")
        return StoreError(f"memory {self.folder}: {err.strerror or err} ({err.filename or ''})")
