"""A log of who or what was seen, when and by which camera, with retention.

Kept in ``<memory>/web-sightings.sqlite``, a file of the web app's own (the memory's database
belongs to :mod:`rap_edge.memory`). A sighting is one visit: the same concept on the same camera
again within ``gap_s`` seconds extends it (``last_seen``, ``count``) instead of adding a row.
Frames are logged from the processing thread through a queue; one writer thread owns the
connection, so logging never waits for the disk. Rows of a forgotten concept are deleted.
"""

from __future__ import annotations

import queue
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "DEFAULT_GAP_S",
    "SIGHTINGS_FILE",
    "Sighting",
    "Sightings",
    "parse_last_seen_question",
]

SIGHTINGS_FILE = "web-sightings.sqlite"
DEFAULT_GAP_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sightings (
    id INTEGER PRIMARY KEY,
    concept_id TEXT NOT NULL,
    name TEXT NOT NULL,
    camera TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    count INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sightings_concept ON sightings (concept_id, last_seen);
CREATE INDEX IF NOT EXISTS sightings_last ON sightings (last_seen);
"""

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
        """Open (or create) the log in ``folder``."""
        self.path = folder / SIGHTINGS_FILE
        self.retention_days = float(retention_days)
        self.gap_s = float(gap_s)
        self._queue: queue.SimpleQueue[tuple[str, str, str, float] | None] = queue.SimpleQueue()
        self._read_lock = threading.Lock()
        self._reader = self._connect()
        self._reader.executescript(_SCHEMA)
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name="rap-edge-sightings")
        self._thread.daemon = True
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA secure_delete=ON")  # forgotten rows leave no bytes behind
        return conn

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
                if item is None:
                    return
                try:
                    self._write(conn, last, *item)
                finally:
                    with self._count_lock:
                        self._pending -= 1
                        if self._pending == 0:
                            self._idle.set()
        finally:
            conn.close()

    def _write(  # noqa: PLR0913, PLR0917 - one observation
        self,
        conn: sqlite3.Connection,
        last: dict[tuple[str, str], tuple[int, float]],
        concept_id: str,
        name: str,
        camera: str,
        when: float,
    ) -> None:
        key = (concept_id, camera)
        prev = last.get(key)
        with conn:
            if prev is not None and when - prev[1] <= self.gap_s:
                cur = conn.execute(
                    "UPDATE sightings SET last_seen = max(last_seen, ?), count = count + 1, "
                    "name = ? WHERE id = ?",
                    (when, name, prev[0]),
                )
                if cur.rowcount:
                    last[key] = (prev[0], max(prev[1], when))
                    return
            cur = conn.execute(
                "INSERT INTO sightings (concept_id, name, camera, first_seen, last_seen, count) "
                "VALUES (?, ?, ?, ?, ?, 1)",
                (concept_id, name, camera, when, when),
            )
            last[key] = (int(cur.lastrowid or 0), when)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued observation is written."""
        return self._idle.wait(timeout)

    # -- reading and deleting (any thread) ---------------------------------------------------

    def recent(self, concept_id: str | None = None, limit: int = 50) -> list[Sighting]:
        """The latest sightings (of one concept), newest first."""
        limit = max(1, min(int(limit), 1000))
        sql = "SELECT concept_id, name, camera, first_seen, last_seen, count FROM sightings"
        args: tuple[Any, ...] = ()
        if concept_id is not None:
            sql += " WHERE concept_id = ?"
            args = (concept_id,)
        sql += " ORDER BY last_seen DESC LIMIT ?"
        with self._read_lock:
            rows = self._reader.execute(sql, (*args, limit)).fetchall()
        return [Sighting(*row) for row in rows]

    def forget(self, concept_id: str) -> int:
        """Delete a concept's sightings; returns how many."""
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
