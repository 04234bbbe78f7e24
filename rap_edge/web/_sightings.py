"""A log of who or what was seen, when and by which camera, with retention.

Kept in the memory's own database (``<memory>/memory.db``, table ``sightings``, schema 4),
whose rows go with their concept (``ON DELETE CASCADE``): forgetting a concept from the CLI,
the web app or a ROS service forgets where it was seen, in the same transaction, with the
memory's forget guarantees. A sighting is one visit: the same concept on the same camera again
within ``gap_s`` seconds extends it (``last_seen``, ``count``) instead of adding a row. Frames
are logged from the processing thread through a queue; one writer thread owns its connection
and writes what is queued in one transaction, so logging never waits for the disk. A sighting
of a concept forgotten meanwhile is dropped. Rows of the earlier ``web-sightings.sqlite`` file
are moved in (for concepts that still exist) and that file deleted.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rap_edge.errors import StoreError
from rap_edge.memory._db import DB_NAME

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger("rap_edge.web")

__all__ = [
    "DEFAULT_GAP_S",
    "SIGHTINGS_FILE",
    "Sighting",
    "Sightings",
    "parse_last_seen_question",
]

SIGHTINGS_FILE = "web-sightings.sqlite"  # before schema 4: moved into memory.db on open
DEFAULT_GAP_S = 60.0
_BATCH = 256  # observations written in one transaction at most

_LAST_SEEN = re.compile(
    r"^\s*when\s+(?:did|have)\s+you\s+(?:last\s+)?(?:seen?|saw)\s+(?P<name>.+?)(?:\s+last)?"
    r"\s*\??\s*$",
    re.IGNORECASE,
)


def parse_last_seen_question(question: str) -> str | None:
    """The name in "When did you last see Bo?" (None: not that kind of question)."""
    found = _LAST_SEEN.match(question)
    return found["name"].strip() if found else None


@dataclass(frozen=True, slots=True)
class Sighting:
    """One visit of a concept to a camera."""

    concept_id: str
    name: str
    camera: str
    first_seen: float
    last_seen: float
    count: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "concept_id": self.concept_id,
            "name": self.name,
            "camera": self.camera,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "count": self.count,
        }


class Sightings:
    """The sightings log (see the module docstring). Call :meth:`close` at the end."""

    def __init__(
        self, folder: Path, *, retention_days: float = 14.0, gap_s: float = DEFAULT_GAP_S
    ) -> None:
        """Open the log of the memory in ``folder`` (open the memory first: it migrates).

        Raises:
            StoreError: no memory there, or one from before schema 4 (open it with rap-edge
                first).
        """
        self.path = folder / DB_NAME
        if not self.path.is_file():
            msg = f"no memory at {folder} (no {DB_NAME})"
            raise StoreError(msg)
        self.retention_days = float(retention_days)
        self.gap_s = float(gap_s)
        self._queue: queue.SimpleQueue[tuple[str, str, str, float] | None] = queue.SimpleQueue()
        self._read_lock = threading.Lock()
        self._reader = self._connect()
        if not self._reader.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sightings'"
        ).fetchone():
            self._reader.close()
            msg = f"{self.path}: no sightings table (a memory from before schema 4; open it first)"
            raise StoreError(msg)
        self._move_legacy(folder / SIGHTINGS_FILE)
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name="rap-edge-sightings")
        self._thread.daemon = True
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")  # a forgotten concept's sighting is refused
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA secure_delete = ON")  # forgotten rows leave no bytes behind
        # The memory is in WAL mode; NORMAL here (the memory's own edits stay FULL): a power
        # cut may lose the last sightings, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _move_legacy(self, old: Path) -> None:
        """Move the rows of a pre-schema-4 ``web-sightings.sqlite`` in, then delete it."""
        if not old.is_file():
            return
        try:
            src = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
            try:
                rows = src.execute(
                    "SELECT concept_id, camera, first_seen, last_seen, count FROM sightings"
                ).fetchall()
            finally:
                src.close()
            with self._read_lock, self._reader:
                self._reader.executemany(
                    "INSERT INTO sightings (concept_id, camera, first_seen, last_seen, count) "
                    "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM concepts WHERE id = ?)",
                    [(*r, r[0]) for r in rows],
                )
        except sqlite3.Error as err:
            log.warning("sightings: %s could not be moved into the memory (%s)", old, err)
            return
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                old.with_name(old.name + suffix).unlink()
        log.info("sightings: moved %d row(s) from %s into the memory", len(rows), old.name)

    # -- writing (the writer thread) --------------------------------------------------------

    def log(self, concept_id: str, name: str, camera: str, when: float | None = None) -> None:
        """Queue one observation (returns at once)."""
        with self._count_lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((concept_id, name, camera, time.time() if when is None else when))

    def _write_loop(self) -> None:
        conn = self._connect()
        last: dict[tuple[str, str], tuple[int, float]] = {}
        try:
            while True:
                item = self._queue.get()
                batch = []
                while item is not None:
                    batch.append(item)
                    if len(batch) >= _BATCH:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                try:
                    self._write_batch(conn, last, batch)
                finally:
                    with self._count_lock:
                        self._pending -= len(batch)
                        if self._pending == 0:
                            self._idle.set()
                if item is None:
                    return
        finally:
            conn.close()

    def _write_batch(
        self,
        conn: sqlite3.Connection,
        last: dict[tuple[str, str], tuple[int, float]],
        batch: list[tuple[str, str, str, float]],
    ) -> None:
        try:
            with conn:
                for concept_id, _name, camera, when in batch:
                    self._write(conn, last, concept_id, camera, when)
        except sqlite3.Error as err:
            last.clear()  # rolled back: the rows the cache names may not exist
            log.warning("sightings: %d observation(s) not written (%s)", len(batch), err)

    def _write(
        self,
        conn: sqlite3.Connection,
        last: dict[tuple[str, str], tuple[int, float]],
        concept_id: str,
        camera: str,
        when: float,
    ) -> None:
        key = (concept_id, camera)
        prev = last.get(key)
        if prev is not None and when - prev[1] <= self.gap_s:
            cur = conn.execute(
                "UPDATE sightings SET last_seen = max(last_seen, ?), count = count + 1 "
                "WHERE id = ?",
                (when, prev[0]),
            )
            if cur.rowcount:
                last[key] = (prev[0], max(prev[1], when))
                return
        # Only for a concept that still exists: one forgotten since the frame is not logged.
        cur = conn.execute(
            "INSERT INTO sightings (concept_id, camera, first_seen, last_seen, count) "
            "SELECT ?, ?, ?, ?, 1 WHERE EXISTS (SELECT 1 FROM concepts WHERE id = ?)",
            (concept_id, camera, when, when, concept_id),
        )
        if cur.rowcount:
            last[key] = (int(cur.lastrowid or 0), when)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued observation is written."""
        return self._idle.wait(timeout)

    # -- reading and deleting (any thread) ---------------------------------------------------

    def recent(self, concept_id: str | None = None, limit: int = 50) -> list[Sighting]:
        """The latest sightings (of one concept), newest first."""
        limit = max(1, min(int(limit), 1000))
        sql = (
            "SELECT s.concept_id, c.name, s.camera, s.first_seen, s.last_seen, s.count "
            "FROM sightings s JOIN concepts c ON c.id = s.concept_id"
        )
        args: tuple[Any, ...] = ()
        if concept_id is not None:
            sql += " WHERE s.concept_id = ?"
            args = (concept_id,)
        sql += " ORDER BY s.last_seen DESC LIMIT ?"
        with self._read_lock:
            rows = self._reader.execute(sql, (*args, limit)).fetchall()
        return [Sighting(*row) for row in rows]

    def forget(self, concept_id: str) -> int:
        """Delete a concept's sightings; returns how many.

        Forgetting the concept itself does this too (the rows cascade); this is for keeping the
        concept and clearing where it was seen.
        """
        self.wait_idle()
        with self._read_lock, self._reader:
            cur = self._reader.execute("DELETE FROM sightings WHERE concept_id = ?", (concept_id,))
        return cur.rowcount

    def purge(self, now: float | None = None) -> int:
        """Delete sightings older than the retention; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400.0
        with self._read_lock, self._reader:
            cur = self._reader.execute("DELETE FROM sightings WHERE last_seen < ?", (cutoff,))
        return cur.rowcount

    def close(self) -> None:
        """Write what is queued and close."""
        self._queue.put(None)
        self._thread.join(10.0)
        with self._read_lock:
            self._reader.close()
