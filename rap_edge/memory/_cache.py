"""The live USearch index of each encoder, kept in step with SQLite (the source of truth).

An index is derived data: loaded from ``index/`` when its saved generation matches the
encoder's generation in SQLite, otherwise rebuilt from the stored vectors. Edits of this
process patch it in place; another process's edits show as a newer generation and make the
next search load or rebuild it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.memory import _index
from rap_edge.memory._locks import ReadWriteLock
from rap_edge.memory._queries import encoder_dim, generation

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import numpy.typing as npt
    from usearch.index import Index

    from rap_edge.memory._locks import FileLock

__all__ = ["IndexCache", "IndexState"]


@dataclass
class IndexState:
    """One encoder's live index and the generation of SQLite it reflects."""

    index: Index
    generation: int
    dim: int


class IndexCache:
    """The in-memory index of each encoder, its saved copy in ``index/``, and their upkeep.

    Searches read :attr:`states` under the shared side of :attr:`lock`; swaps and patches take
    the exclusive side only for the moment they change an index, never for a load or build.

    Attributes:
        folder: The memory's ``index`` folder.
        dtype: Scalar kind of the indexes (``f16``, ``i8`` or ``f32``).
        states: Encoder id -> live index.
        lock: Readers are searches; writers swap or patch an index.
        writer_active: True while this process commits an edit (it patches the index itself).
    """

    def __init__(self, folder: Path, *, dtype: str, readonly: bool, file_lock: FileLock) -> None:
        self.folder = folder
        self.dtype = dtype
        self.readonly = readonly
        self.states: dict[str, IndexState] = {}
        self.lock = ReadWriteLock()
        self.writer_active = False
        self._file_lock = file_lock

    def path(self, encoder_id: str) -> Path:
        """The saved index file of ``encoder_id``."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_id)[:48]
        digest = hashlib.sha256(encoder_id.encode()).hexdigest()[:10]
        return self.folder / f"{slug}-{digest}.usidx"

    def stale_reason(self, encoder: str, *, generation: int, dim: int) -> str | None:
        """Why the saved index of ``encoder`` cannot be used as it is (None if it can)."""
        _idx, reason = _index.load_index(
            self.path(encoder),
            encoder_id=encoder,
            generation=generation,
            dim=dim,
            dtype=self.dtype,
        )
        return reason or None

    def clear(self) -> None:
        """Drop every live index."""
        self.states.clear()

    def refresh(self, conn: sqlite3.Connection, encoder: str) -> None:
        """Make the in-memory index of ``encoder`` match SQLite (load or rebuild if needed).

        Another process's edit shows as a newer generation in SQLite. The new index is loaded
        or built without blocking searches, then swapped in.
        """
        state = self.states.get(encoder)
        if state is not None and (
            self.writer_active or state.generation == generation(conn, encoder)
        ):
            # While this process is writing, the writer brings the index up to date itself;
            # until it does, searches drop hits whose rows are gone (see Memory._search_one).
            return
        new, built = self._load_or_build(conn, encoder)
        self._swap(encoder, new)
        if built and not self.readonly:
            # Another writer may hold the lock; it will save, so do not wait for it. A save
            # that fails (a full disk) only costs the next process a rebuild.
            with self._file_lock.hold(blocking=False) as held:
                if held and generation(conn, encoder) == new.generation:
                    self._try_save(encoder, new)

    def rebuild(self, conn: sqlite3.Connection, encoders: Sequence[str]) -> dict[str, int]:
        """Build, install and save the index of each encoder; return vectors per encoder.

        The caller holds the writer lock.
        """
        out: dict[str, int] = {}
        for enc in encoders:
            encoder_dim(conn, enc)
            state = self._build(conn, enc)
            self._swap(enc, state)
            self._save(enc, state)
            out[enc] = len(state.index)
        return out

    def generations(self, conn: sqlite3.Connection) -> dict[str, int]:
        """Every registered encoder's generation (taken before an edit, for :meth:`patch`)."""
        return {
            str(r[0]): int(r[1])
            for r in conn.execute("SELECT id, generation FROM encoders").fetchall()
        }

    def patch(
        self,
        conn: sqlite3.Connection,
        added: Mapping[str, Sequence[tuple[int, npt.NDArray[np.float32]]]],
        removed: Mapping[str, Sequence[int]],
        before: Mapping[str, int],
    ) -> tuple[set[str], set[str]]:
        """Apply a committed edit to the live indexes; say which to save or rebuild.

        Args:
            conn: The writer's connection.
            added: Encoder -> (vector key, vector) pairs the edit inserted.
            removed: Encoder -> vector keys the edit deleted.
            before: :meth:`generations` before the edit.

        Returns:
            The encoders whose patched index should be saved, and those to rebuild.
        """
        to_save: set[str] = set()
        to_build: set[str] = set()
        for enc in set(added) | set(removed):
            state = self.states.get(enc)
            if state is None and enc in before:
                # Not loaded in this process yet (a CLI call): the saved index of the state
                # before this edit plus the edit avoids a full rebuild.
                dim = encoder_dim(conn, enc)
                index, _ = _index.load_index(
                    self.path(enc),
                    encoder_id=enc,
                    generation=before[enc],
                    dim=dim,
                    dtype=self.dtype,
                )
                if index is not None:
                    state = IndexState(index=index, generation=before[enc], dim=dim)
            if state is None or state.generation != before.get(enc, 0):
                to_build.add(enc)
                continue
            with self.lock.write():
                self.states[enc] = state
                if removed.get(enc):
                    state.index.remove(np.array(removed[enc], dtype=np.uint64))
                if added.get(enc):
                    pairs = added[enc]
                    keys = np.array([key for key, _ in pairs], dtype=np.uint64)
                    state.index.add(keys, np.stack([vec for _, vec in pairs]))
                state.generation = generation(conn, enc)
            # Removal tombstones keep the vectors' bytes in the index: compact by rebuilding.
            (to_build if removed.get(enc) else to_save).add(enc)
        return to_save, to_build

    def finish(
        self, conn: sqlite3.Connection, to_save: set[str], to_build: set[str]
    ) -> dict[str, tuple[str, bool]]:
        """After :meth:`patch`, still holding the writer lock: rebuild or save indexes.

        The edit is committed by then, so a save that fails (a full disk) does not fail it:
        the outdated file is deleted instead (it may hold vectors just forgotten, and the
        generation check would rebuild it anyway) and the index is rebuilt on next use.

        Returns:
            Encoder -> (what went wrong, whether its outdated file is still on disk), for
            each index that could not be saved.
        """
        failed: dict[str, tuple[str, bool]] = {}
        for enc in sorted(to_build | to_save):
            state = self.states[enc] if enc not in to_build else None
            if state is None:
                state = self._build(conn, enc)
                self._swap(enc, state)
            problem = self._try_save(enc, state)
            if problem is not None:
                failed[enc] = problem
        return failed

    def _try_save(self, encoder: str, state: IndexState) -> tuple[str, bool] | None:
        """Save, or on failure delete the outdated file; say what went wrong (None: saved)."""
        try:
            self._save(encoder, state)
        except OSError as err:
            reason = err.strerror or str(err)
            try:
                self.path(encoder).unlink(missing_ok=True)
            except OSError as unlink_err:
                return (f"{reason}; its outdated file: {unlink_err.strerror or unlink_err}", True)
            return reason, False
        return None

    def stale(self, conn: sqlite3.Connection) -> tuple[set[str], dict[str, tuple[str, bool]]]:
        """Encoders whose saved index is missing or out of date; half-written files deleted.

        An outdated file may hold the vectors of a concept forgotten since it was saved, so
        the caller rebuilds these with :meth:`finish` (which deletes a file it cannot replace).

        Returns:
            The encoders, and the half-written files that could not be deleted (as
            :meth:`finish` reports failures).
        """
        failed: dict[str, tuple[str, bool]] = {}
        for path in self.folder.glob(".*.tmp"):
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                failed[path.name] = (err.strerror or str(err), True)
        encoders = {
            str(enc)
            for enc, dim in conn.execute("SELECT id, dim FROM encoders").fetchall()
            if self.stale_reason(enc, generation=generation(conn, enc), dim=int(dim))
        }
        return encoders, failed

    def _swap(self, encoder: str, new: IndexState) -> None:
        """Install ``new`` unless a newer index is already there (generations only grow)."""
        with self.lock.write():
            current = self.states.get(encoder)
            if current is None or current.generation <= new.generation:
                self.states[encoder] = new

    def _save(self, encoder: str, state: IndexState) -> None:
        _index.save_index(
            self.path(encoder), state.index, encoder_id=encoder, generation=state.generation
        )

    def _load_or_build(self, conn: sqlite3.Connection, encoder: str) -> tuple[IndexState, bool]:
        """The saved index if it is current, else one built from SQLite; and whether built."""
        gen = generation(conn, encoder)
        dim = encoder_dim(conn, encoder)
        index, _reason = _index.load_index(
            self.path(encoder), encoder_id=encoder, generation=gen, dim=dim, dtype=self.dtype
        )
        if index is not None:
            return IndexState(index=index, generation=gen, dim=dim), False
        return self._build(conn, encoder), True

    def _build(self, conn: sqlite3.Connection, encoder: str) -> IndexState:
        """Build an index of every vector of ``encoder`` (does not install it)."""
        # Read vectors and generation in one snapshot so they agree.
        conn.execute("BEGIN")
        try:
            gen = generation(conn, encoder)
            dim = encoder_dim(conn, encoder)
            rows = conn.execute(
                "SELECT id, vector FROM vectors WHERE encoder_id = ? ORDER BY id", (encoder,)
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        keys = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
        vectors = np.empty((len(rows), dim), dtype=np.float32)
        for i, r in enumerate(rows):
            vectors[i] = np.frombuffer(r[1], dtype="<f4")
        index = _index.build_index(
            keys, vectors, dim=dim, dtype=self.dtype, desc=f"indexing {encoder}"
        )
        return IndexState(index=index, generation=gen, dim=dim)
