"""What an edit leaves to do after its commit, and finishing it later when that fails.

An edit's commit is the moment it happens. What follows is upkeep: deleting the image files
no row refers to any more, saving or rebuilding the index files, and merging the WAL into the
database so the pages of deleted rows (zeroed by ``secure_delete``) replace the old ones.
A full disk or a kill can stop the upkeep, never undo the edit; so it must not report the edit
as failed, and a forget must not leave the forgotten concept's bytes behind unnoticed.

Every edit that deletes something sets a marker row in ``meta`` inside its own transaction; the
marker is cleared only once the upkeep is complete. While it is set, the next writable open,
the next edit and ``vacuum`` run the whole upkeep again (idempotent: orphan files, outdated
index files, the WAL). What could not be finished is said in :attr:`Memory.unfinished`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rap_edge.memory._queries import meta

if TYPE_CHECKING:
    import sqlite3

    from rap_edge.memory._cache import IndexCache
    from rap_edge.memory._files import ImageStore

__all__ = ["MARKER", "clear_marker", "describe", "is_marked", "run", "set_marker"]

log = logging.getLogger(__name__)

MARKER = "upkeep_pending"
_LATER = "the next writable open of the memory or `rap-edge memory vacuum` finishes it"


def set_marker(conn: sqlite3.Connection) -> bool:
    """Inside a write transaction: mark upkeep as due; return whether it was due already."""
    if meta(conn, MARKER) is not None:
        return True
    conn.execute("INSERT INTO meta(key, value) VALUES (?, 'forget')", (MARKER,))
    return False


def is_marked(conn: sqlite3.Connection) -> bool:
    """Whether an earlier edit left upkeep unfinished."""
    return meta(conn, MARKER) is not None


def clear_marker(conn: sqlite3.Connection) -> None:
    """The upkeep is complete. Failing to record that only means it runs once more."""
    try:
        conn.execute("DELETE FROM meta WHERE key = ?", (MARKER,))
    except Exception as err:  # noqa: BLE001 - a full disk; the upkeep is simply repeated
        log.debug("upkeep marker not cleared: %s", err)


def run(  # noqa: PLR0913 - the parts of a memory the upkeep touches
    conn: sqlite3.Connection,
    files: ImageStore,
    cache: IndexCache,
    *,
    orphaned: set[tuple[str, str]],
    to_save: set[str],
    to_build: set[str],
    full: bool,
    merge_wal: bool,
) -> dict[str, str]:
    """Do the upkeep after a commit (never raises for a full disk or an I/O error).

    Args:
        conn: The writer's connection, outside any transaction, writer lock held.
        files: The image store.
        cache: The live indexes.
        orphaned: (sha256, ext) of image files the edit may have left unreferenced.
        to_save: Encoders whose patched index to save.
        to_build: Encoders whose index to rebuild (and save).
        full: Also sweep everything an earlier, unfinished upkeep may have left: orphan
            image files, half-written index files, and rebuild missing or outdated ones.
        merge_wal: Merge the WAL into the database (after a deletion).

    Returns:
        What is still unfinished: a key per task and a sentence saying what remains and when
        it is finished. Empty when everything is done (and the marker is then cleared).
    """
    left: dict[str, str] = {}
    try:
        if full:
            files.delete_orphans(conn)
        elif orphaned:
            files.delete_unreferenced(conn, orphaned)
    except OSError as err:
        left["files"] = (
            f"image files of forgotten concepts could not be deleted ({describe(err)}); they "
            f"stay on disk until {_LATER}"
        )
    failed: dict[str, tuple[str, bool]] = {}
    if full:
        stale, failed = cache.stale(conn)
        to_build = to_build | stale
    failed.update(cache.finish(conn, to_save, to_build))
    for enc, (reason, stays) in sorted(failed.items()):
        if stays:
            left[f"index:{enc}"] = (
                f"the index file of {enc!r} could not be rewritten nor deleted ({reason}); it "
                f"may still hold forgotten vectors until {_LATER}"
            )
        else:
            left[f"index:{enc}"] = (
                f"the index of {enc!r} could not be saved ({reason}); its outdated file was "
                f"deleted, searches rebuild it in memory, and {_LATER}"
            )
    if merge_wal or full:
        problem = _merge_wal(conn)
        if problem:
            left["wal"] = (
                f"the write-ahead log could not be merged into memory.db ({problem}), so the "
                f"forgotten rows' old bytes stay in memory.db until {_LATER}"
            )
    marked = merge_wal or full
    if not left and marked:
        clear_marker(conn)
    elif left and not marked:
        _mark_later(conn)
    return left


def _mark_later(conn: sqlite3.Connection) -> None:
    """After a commit whose upkeep failed, make the next writable open retry it.

    Best effort: with the disk still full this may fail too, and then a search rebuilds
    the index in memory and saves it when there is room.
    """
    try:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, 'index') ON CONFLICT(key) DO NOTHING",
            (MARKER,),
        )
    except Exception as err:  # noqa: BLE001 - a full disk: said by the caller's message
        log.debug("upkeep marker not set: %s", err)


def _merge_wal(conn: sqlite3.Connection) -> str | None:
    """Checkpoint the WAL into the database and truncate it; say why not if it failed."""
    try:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except Exception as err:  # noqa: BLE001 - sqlite3.Error or OSError: said, not raised
        return describe(err)
    if busy:
        return "another process was reading the memory"
    return None


def describe(err: BaseException) -> str:
    """A short reason for an OS or SQLite error."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err)
