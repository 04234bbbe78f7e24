"""The concept memory: SQLite as the source of truth, one derived USearch index per encoder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import quote

import numpy as np

from rap_edge.errors import (
    ConceptNotFoundError,
    ConfigError,
    ConflictError,
    InvalidInputError,
    MemoryLockedError,
    MemoryReadOnlyError,
    RapEdgeError,
    SchemaError,
    StoreError,
)
from rap_edge.interfaces import Concept, ImageRecord, SearchHit
from rap_edge.memory import _index, _schema
from rap_edge.memory._locks import FileLock, ReadWriteLock
from rap_edge.memory._validate import (
    MAX_VECTOR_DIM,
    CheckedImage,
    check_image_bytes,
    check_image_file,
    check_vectors,
    clean_aliases,
    clean_category,
    clean_info,
    clean_name,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Sequence
    from typing import Self

    import numpy.typing as npt
    from usearch.index import Index

    from rap_edge.interfaces import Embedder

__all__ = ["ImageLike", "Memory", "NewConcept", "VerifyReport", "default_memory_dir"]

DB_NAME = "memory.db"
LOCK_NAME = ".write.lock"
ImageLike: TypeAlias = "str | os.PathLike[str] | bytes"
_MAX_K = 1000
_ENCODER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")


def default_memory_dir() -> Path:
    """``$RAP_EDGE_MEMORY`` if set, else ``memory`` under the user's data folder."""
    env = os.environ.get("RAP_EDGE_MEMORY")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("rap-edge")) / "memory"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Result of :meth:`Memory.verify`.

    Attributes:
        ok: True when no problem was found (warnings do not count).
        problems: Damage that loses or corrupts data (each a sentence naming what).
        warnings: Harmless leftovers, such as orphan image files from an interrupted edit.
        counts: Numbers of concepts, images, vectors and pending images.
    """

    ok: bool
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class NewConcept:
    """A concept to add with :meth:`Memory.add_many` (fields as in :meth:`Memory.add`).

    Attributes:
        name: Display name, unique (case-insensitive).
        images: Image files (paths) or encoded image bytes.
        category: Such as ``person``, ``dog``, ``mug``.
        info: Free text.
        aliases: Other names.
        vectors: float32 [len(images), dim] from ``encoder``, or None (images stay pending).
        encoder: Id of the encoder that produced ``vectors``.
    """

    name: str
    images: Sequence[ImageLike] = ()
    category: str = "object"
    info: str = ""
    aliases: Sequence[str] = ()
    vectors: npt.ArrayLike | None = None
    encoder: str | None = None


@dataclass
class _IndexState:
    index: Index
    generation: int
    dim: int


@dataclass
class _Tx:
    """What one write transaction did, applied to indexes and files after it commits."""

    conn: sqlite3.Connection
    now: float
    added: dict[str, list[tuple[int, npt.NDArray[np.float32]]]] = field(default_factory=dict)
    removed: dict[str, list[int]] = field(default_factory=dict)  # encoder -> vector keys
    new_files: list[Path] = field(default_factory=list)
    maybe_orphaned: set[tuple[str, str]] = field(default_factory=set)


class Memory:
    """A user's concepts: names, categories, info, reference images and their vectors.

    Thread-safe: any number of threads may search while one edits; edits are visible to the
    very next search. Across processes, one writer at a time (an advisory file lock plus
    SQLite's own), and a search notices another process's edits through the encoder's
    generation counter.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        readonly: bool = False,
        index_dtype: Literal["f16", "i8", "f32"] | None = None,
        lock_timeout_s: float = 10.0,
    ) -> None:
        """Open (or with ``create``, create) the memory in folder ``path``.

        Args:
            path: Memory folder.
            create: Create the folder and database if they do not exist.
            readonly: Open without write access; edits raise :class:`MemoryReadOnlyError`.
            index_dtype: Scalar kind of new vector indexes (``f16`` default, ``i8`` smaller,
                ``f32`` exact); only used when the memory is created.
            lock_timeout_s: How long an edit waits for another writer.

        Raises:
            StoreError: if there is no memory there (and ``create`` is off), or it is unusable.
            SchemaError: if it was written by a newer rap-edge or is not a memory.
        """
        if lock_timeout_s <= 0 or not np.isfinite(lock_timeout_s):
            msg = f"lock_timeout_s must be a positive number of seconds, got {lock_timeout_s}"
            raise InvalidInputError(msg)
        if index_dtype is not None and index_dtype not in _index.INDEX_DTYPES:
            msg = f"index_dtype must be one of {', '.join(_index.INDEX_DTYPES)}: {index_dtype!r}"
            raise InvalidInputError(msg)
        if create and readonly:
            msg = "a memory cannot be created read-only"
            raise InvalidInputError(msg)
        self.path = Path(path).expanduser().resolve()
        self.readonly = readonly
        self._db_path = self.path / DB_NAME
        self._timeout_s = lock_timeout_s
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._rw = ReadWriteLock()
        self._indexes: dict[str, _IndexState] = {}
        self._writer_active = False
        self._closed = False
        if create:
            self._create(index_dtype or "f16")
        elif not self._db_path.exists():
            msg = f"no memory at {self.path} (create one with `rap-edge memory init {self.path}`)"
            raise StoreError(msg)
        self._file_lock = FileLock(self.path / LOCK_NAME, timeout_s=lock_timeout_s)
        with self._errors():
            conn = self._conn()
            version = _schema.read_version(conn, path=str(self._db_path))
            if version < _schema.SCHEMA_VERSION and readonly:
                msg = (
                    f"{self._db_path} has schema {version} and needs an upgrade; run "
                    f"`rap-edge memory init {self.path}` once to migrate it"
                )
                raise SchemaError(msg)
            if version != _schema.SCHEMA_VERSION:
                _schema.migrate(conn, version=version, path=str(self._db_path))
            self.index_dtype: str = self._meta(conn, "index_dtype") or "f16"

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def init(
        cls, path: str | os.PathLike[str], *, index_dtype: Literal["f16", "i8", "f32"] = "f16"
    ) -> Memory:
        """Create a memory in ``path`` (or open the one already there)."""
        return cls(path, create=True, index_dtype=index_dtype)

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the memory."""
        self.close()

    def close(self) -> None:
        """Close every connection and the lock file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()
        if hasattr(self, "_file_lock"):
            self._file_lock.close()
        self._indexes.clear()

    def _create(self, index_dtype: str) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            for sub in ("images", "index"):
                (self.path / sub).mkdir(mode=0o700, exist_ok=True)
            if self._db_path.exists():
                return
            # Create the file ourselves so it is owner-only; SQLite gives its -wal and -shm
            # files the same permissions as the database.
            os.close(os.open(self._db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as err:
            msg = f"cannot create a memory in {self.path}: {err.strerror or err}"
            raise MemoryReadOnlyError(msg) from err
        with self._errors():
            conn = self._conn()
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

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        if self._closed:
            msg = f"memory {self.path} is closed"
            raise StoreError(msg)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self.readonly:
            uri = f"file:{quote(str(self._db_path))}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=False)
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

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate SQLite and OS errors into rap-edge errors naming the memory."""
        try:
            yield
        except RapEdgeError:
            raise
        except sqlite3.OperationalError as err:
            text = str(err)
            if "locked" in text or "busy" in text:
                msg = (
                    f"memory {self.path} is locked by another writer for more than "
                    f"{self._timeout_s:g} s; retry, or stop the other process"
                )
                raise MemoryLockedError(msg) from err
            if "readonly" in text or "read-only" in text:
                msg = f"memory {self.path} is read-only ({text})"
                raise MemoryReadOnlyError(msg) from err
            msg = f"memory {self.path}: {text}"
            raise StoreError(msg) from err
        except sqlite3.DatabaseError as err:
            msg = f"{self._db_path} is not a usable memory database ({err})"
            raise SchemaError(msg) from err
        except OSError as err:
            msg = f"memory {self.path}: {err.strerror or err} ({err.filename or ''})"
            raise StoreError(msg) from err

    # -- helpers -----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            msg = f"memory {self.path} was opened read-only"
            raise MemoryReadOnlyError(msg)

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _image_path(self, sha256: str, ext: str) -> Path:
        return self.path / "images" / sha256[:2] / f"{sha256}.{ext}"

    def _index_path(self, encoder_id: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_id)[:48]
        digest = hashlib.sha256(encoder_id.encode()).hexdigest()[:10]
        return self.path / "index" / f"{slug}-{digest}.usidx"

    def _generation(self, conn: sqlite3.Connection, encoder_id: str) -> int:
        row = conn.execute("SELECT generation FROM encoders WHERE id = ?", (encoder_id,))
        found = row.fetchone()
        return -1 if found is None else int(found[0])

    def _encoder_dim(self, conn: sqlite3.Connection, encoder_id: str) -> int:
        row = conn.execute("SELECT dim FROM encoders WHERE id = ?", (encoder_id,)).fetchone()
        if row is None:
            msg = f"encoder {encoder_id!r} has no vectors in this memory"
            raise ConceptNotFoundError(msg)
        return int(row[0])

    def _resolve_id(self, conn: sqlite3.Connection, ref: str) -> str:
        if not isinstance(ref, str) or not ref.strip():
            msg = f"a concept is named by its id or name, got {ref!r}"
            raise InvalidInputError(msg)
        ref = ref.strip()
        row = conn.execute(
            "SELECT id FROM concepts WHERE id = ? OR name = ? COLLATE NOCASE "
            "ORDER BY id = ? DESC LIMIT 1",
            (ref, ref, ref),
        ).fetchone()
        if row is None:
            msg = f"no concept with id or name {ref!r}"
            raise ConceptNotFoundError(msg)
        return str(row[0])

    def _concepts(
        self, conn: sqlite3.Connection, where: str, args: Sequence[Any]
    ) -> list[Concept]:
        rows = conn.execute(
            "SELECT id, name, aliases, category, info, created_at, updated_at FROM concepts "
            f"{where} ORDER BY name COLLATE NOCASE",
            args,
        ).fetchall()
        if not rows:
            return []
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        images: dict[str, list[ImageRecord]] = {cid: [] for cid in ids}
        encs: dict[int, list[str]] = {}
        for image_id, enc in conn.execute(
            "SELECT v.image_id, v.encoder_id FROM vectors v JOIN images i ON i.id = v.image_id "
            f"WHERE i.concept_id IN ({marks}) ORDER BY v.encoder_id",
            ids,
        ):
            encs.setdefault(int(image_id), []).append(str(enc))
        for r in conn.execute(
            "SELECT id, concept_id, sha256, ext, width, height, source_name, added_at "
            f"FROM images WHERE concept_id IN ({marks}) ORDER BY id",
            ids,
        ):
            images[r[1]].append(self._image_record(r, tuple(encs.get(int(r[0]), ()))))
        return [
            Concept(
                id=r[0],
                name=r[1],
                aliases=tuple(json.loads(r[2])),
                category=r[3],
                info=r[4],
                created_at=float(r[5]),
                updated_at=float(r[6]),
                images=tuple(images[r[0]]),
            )
            for r in rows
        ]

    def _image_record(self, r: Sequence[Any], encoders: tuple[str, ...]) -> ImageRecord:
        return ImageRecord(
            id=int(r[0]),
            concept_id=str(r[1]),
            sha256=str(r[2]),
            path=self._image_path(str(r[2]), str(r[3])),
            width=int(r[4]),
            height=int(r[5]),
            source_name=str(r[6]),
            added_at=float(r[7]),
            encoders=encoders,
        )

    # -- reading -----------------------------------------------------------------------------

    def get(self, ref: str) -> Concept:
        """Return the concept with this id or name (names match case-insensitively).

        Raises:
            ConceptNotFoundError: if there is none.
        """
        with self._errors():
            conn = self._conn()
            return self._concepts(conn, "WHERE id = ?", (self._resolve_id(conn, ref),))[0]

    def list_concepts(self, *, category: str | None = None) -> list[Concept]:
        """All concepts (optionally of one category), sorted by name."""
        with self._errors():
            conn = self._conn()
            if category is None:
                return self._concepts(conn, "", ())
            return self._concepts(conn, "WHERE category = ?", (clean_category(category),))

    def categories(self) -> set[str]:
        """The distinct categories of the concepts (one query; no concept is loaded)."""
        with self._errors():
            rows = self._conn().execute("SELECT DISTINCT category FROM concepts").fetchall()
        return {str(r[0]) for r in rows}

    def __len__(self) -> int:
        """Number of concepts."""
        with self._errors():
            return int(self._conn().execute("SELECT count(*) FROM concepts").fetchone()[0])

    @property
    def active_encoder(self) -> str | None:
        """The encoder searches use by default (None until one is registered)."""
        with self._errors():
            return self._meta(self._conn(), "active_encoder")

    def encoders(self) -> dict[str, int]:
        """Registered encoders and their vector dimensions."""
        with self._errors():
            rows = self._conn().execute("SELECT id, dim FROM encoders ORDER BY id").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def pending(self, encoder: str | None = None) -> list[ImageRecord]:
        """Images that have no vector yet for ``encoder`` (default: the active encoder).

        With no encoder registered at all, every image is pending.
        """
        with self._errors():
            conn = self._conn()
            enc = encoder or self._meta(conn, "active_encoder")
            rows = conn.execute(
                "SELECT id, concept_id, sha256, ext, width, height, source_name, added_at "
                "FROM images i WHERE NOT EXISTS (SELECT 1 FROM vectors v "
                "WHERE v.image_id = i.id AND v.encoder_id = ?) ORDER BY id",
                (enc or "",),
            ).fetchall()
            return [self._image_record(r, ()) for r in rows]

    def search(
        self,
        vectors: npt.ArrayLike,
        *,
        k: int = 3,
        threshold: float | None = None,
        encoder: str | None = None,
    ) -> list[list[SearchHit]]:
        """Find the ``k`` closest concepts for each query vector.

        A concept scores the best cosine similarity over its reference images. Hits below
        ``threshold`` are dropped, so a query may get fewer than ``k`` hits, or none.

        Args:
            vectors: One vector [dim] or a batch [n, dim].
            k: Concepts per query, 1..1000.
            threshold: Minimum cosine similarity in [-1, 1]; None keeps everything.
            encoder: Index to search; default the active encoder.

        Returns:
            One list of hits per query vector, best first.
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= _MAX_K:
            msg = f"k must be an integer in 1..{_MAX_K}, got {k!r}"
            raise InvalidInputError(msg)
        if threshold is not None and not (
            isinstance(threshold, (int, float)) and -1.0 <= float(threshold) <= 1.0
        ):
            msg = f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}"
            raise InvalidInputError(msg)
        with self._errors():
            conn = self._conn()
            enc = self._default_encoder(conn, encoder)
            queries = check_vectors(vectors, dim=self._encoder_dim(conn, enc), what="query")
            self._refresh_index(enc)
            with self._rw.read():
                state = self._indexes[enc]
                return [self._search_one(conn, state, enc, q, k, threshold) for q in queries]

    def _search_one(  # noqa: PLR0913, PLR0917 - private, called in one place
        self,
        conn: sqlite3.Connection,
        state: _IndexState,
        encoder: str,
        query: npt.NDArray[np.float32],
        k: int,
        threshold: float | None,
    ) -> list[SearchHit]:
        size = len(state.index)
        count = min(size, k * 4)
        unit_query = query / np.linalg.norm(query)
        while True:
            found = list(_index.search_keys(state.index, query, count))
            best: dict[str, SearchHit] = {}
            rows = self._rows_for_keys(conn, encoder, [key for key, _ in found])
            for key, _approx in found:
                row = rows.get(key)
                # A key SQLite no longer has was removed by another process since the index
                # was loaded: never report it.
                if row is None:
                    continue
                # Re-rank with the exact float32 vector: the index's f16/i8 copy only selects
                # candidates (i8 alone gets recall@1 of about 0.85, see the README).
                stored = np.frombuffer(row[4], dtype="<f4")
                score = float(stored @ unit_query) / float(np.linalg.norm(stored))
                if threshold is not None and score < threshold:
                    continue
                hit = best.get(row[1])
                if hit is None or score > hit.score:
                    best[row[1]] = SearchHit(
                        concept_id=row[1],
                        name=row[2],
                        category=row[3],
                        image_id=row[0],
                        vector_key=key,
                        score=score,
                    )
            # Quantized scores may be off by a few hundredths, so stop widening only well below.
            below = threshold is not None and bool(found) and found[-1][1] < threshold - 0.05
            if len(best) >= k or count >= size or below:
                break
            count = min(size, count * 4)
        return sorted(best.values(), key=lambda h: (-h.score, h.name))[:k]

    @staticmethod
    def _rows_for_keys(
        conn: sqlite3.Connection, encoder: str, keys: list[int]
    ) -> dict[int, tuple[int, str, str, str, bytes]]:
        out: dict[int, tuple[int, str, str, str, bytes]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in conn.execute(
                "SELECT v.id, v.image_id, c.id, c.name, c.category, v.vector FROM vectors v "
                "JOIN images i ON i.id = v.image_id JOIN concepts c ON c.id = i.concept_id "
                f"WHERE v.encoder_id = ? AND v.id IN ({marks})",
                (encoder, *chunk),
            ):
                out[int(r[0])] = (int(r[1]), str(r[2]), str(r[3]), str(r[4]), bytes(r[5]))
        return out

    def _default_encoder(self, conn: sqlite3.Connection, encoder: str | None) -> str:
        enc = encoder or self._meta(conn, "active_encoder")
        if enc is None:
            msg = "this memory has no vectors yet: add images with vectors from an encoder first"
            raise ConfigError(msg)
        return enc

    # -- the derived index ---------------------------------------------------------------------

    def _refresh_index(self, encoder: str) -> None:
        """Make the in-memory index of ``encoder`` match SQLite (load or rebuild if needed).

        Another process's edit shows as a newer generation in SQLite. The new index is loaded
        or built without blocking searches, then swapped in.
        """
        conn = self._conn()
        state = self._indexes.get(encoder)
        if state is not None and (
            self._writer_active or state.generation == self._generation(conn, encoder)
        ):
            # While this process is writing, the writer brings the index up to date itself;
            # until it does, searches drop hits whose rows are gone (see _search_one).
            return
        new, built = self._load_or_build(conn, encoder)
        self._swap(encoder, new)
        if built and not self.readonly:
            # Another writer may hold the lock; it will save, so do not wait for it.
            with self._file_lock.hold(blocking=False) as held:
                if held and self._generation(conn, encoder) == new.generation:
                    self._save(encoder, new)

    def _swap(self, encoder: str, new: _IndexState) -> None:
        """Install ``new`` unless a newer index is already there (generations only grow)."""
        with self._rw.write():
            current = self._indexes.get(encoder)
            if current is None or current.generation <= new.generation:
                self._indexes[encoder] = new

    def _save(self, encoder: str, state: _IndexState) -> None:
        _index.save_index(
            self._index_path(encoder),
            state.index,
            encoder_id=encoder,
            generation=state.generation,
        )

    def _load_or_build(self, conn: sqlite3.Connection, encoder: str) -> tuple[_IndexState, bool]:
        """The saved index if it is current, else one built from SQLite; and whether built."""
        generation = self._generation(conn, encoder)
        dim = self._encoder_dim(conn, encoder)
        index, _reason = _index.load_index(
            self._index_path(encoder),
            encoder_id=encoder,
            generation=generation,
            dim=dim,
            dtype=self.index_dtype,
        )
        if index is not None:
            return _IndexState(index=index, generation=generation, dim=dim), False
        return self._build(conn, encoder), True

    def _build(self, conn: sqlite3.Connection, encoder: str) -> _IndexState:
        """Build an index of every vector of ``encoder`` (does not install it)."""
        # Read vectors and generation in one snapshot so they agree.
        conn.execute("BEGIN")
        try:
            generation = self._generation(conn, encoder)
            dim = self._encoder_dim(conn, encoder)
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
            keys, vectors, dim=dim, dtype=self.index_dtype, desc=f"indexing {encoder}"
        )
        return _IndexState(index=index, generation=generation, dim=dim)

    def rebuild_index(self, encoder: str | None = None) -> dict[str, int]:
        """Rebuild (and save) the index of one encoder, or of all; return vectors per encoder."""
        self._check_writable()
        with self._errors(), self._file_lock.hold():
            conn = self._conn()
            targets = [encoder] if encoder else list(self.encoders())
            out: dict[str, int] = {}
            for enc in targets:
                self._encoder_dim(conn, enc)
                state = self._build(conn, enc)
                self._swap(enc, state)
                self._save(enc, state)
                out[enc] = len(state.index)
            return out

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[_Tx]:
        """One write transaction, exclusive in-process and across processes.

        Searches are never blocked by the SQL work, the file copies or index builds and saves;
        they wait only while the live index is patched (microseconds per vector).
        """
        self._check_writable()
        with self._errors(), self._file_lock.hold():
            self._writer_active = True
            try:
                conn = self._conn()
                conn.execute("BEGIN IMMEDIATE")
                tx = _Tx(conn=conn, now=time.time())
                before = dict(conn.execute("SELECT id, generation FROM encoders").fetchall())
                try:
                    yield tx
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._delete_unreferenced(conn, {(p.stem, p.suffix[1:]) for p in tx.new_files})
                    raise
                to_save, to_build = self._patch_live_indexes(tx, before)
            finally:
                self._writer_active = False
            self._finish(tx, to_save, to_build)

    def _patch_live_indexes(self, tx: _Tx, before: dict[str, int]) -> tuple[set[str], set[str]]:
        """Apply a committed edit to the in-memory indexes; say which to save or rebuild."""
        conn = tx.conn
        to_save: set[str] = set()
        to_build: set[str] = set()
        for enc in set(tx.added) | set(tx.removed):
            state = self._indexes.get(enc)
            if state is None and enc in before:
                # Not loaded in this process yet (a CLI call): the saved index of the state
                # before this edit plus the edit avoids a full rebuild.
                dim = self._encoder_dim(conn, enc)
                index, _ = _index.load_index(
                    self._index_path(enc),
                    encoder_id=enc,
                    generation=before[enc],
                    dim=dim,
                    dtype=self.index_dtype,
                )
                if index is not None:
                    state = _IndexState(index=index, generation=before[enc], dim=dim)
            if state is None or state.generation != before.get(enc, 0):
                to_build.add(enc)
                continue
            with self._rw.write():
                self._indexes[enc] = state
                if tx.removed.get(enc):
                    state.index.remove(np.array(tx.removed[enc], dtype=np.uint64))
                if tx.added.get(enc):
                    pairs = tx.added[enc]
                    keys = np.array([key for key, _ in pairs], dtype=np.uint64)
                    state.index.add(keys, np.stack([vec for _, vec in pairs]))
                state.generation = self._generation(conn, enc)
            # Removal tombstones keep the vectors' bytes in the index: compact by rebuilding.
            (to_build if tx.removed.get(enc) else to_save).add(enc)
        return to_save, to_build

    def _finish(self, tx: _Tx, to_save: set[str], to_build: set[str]) -> None:
        """After commit, still holding the writer lock: rebuild/save indexes, drop files."""
        conn = tx.conn
        for enc in to_build:
            state = self._build(conn, enc)
            self._swap(enc, state)
            self._save(enc, state)
        for enc in to_save - to_build:
            self._save(enc, self._indexes[enc])
        orphaned = tx.maybe_orphaned
        if orphaned:
            self._delete_unreferenced(conn, orphaned)
        if tx.removed or orphaned:
            # Drop the WAL's copies of deleted pages too: forgetting leaves no bytes behind.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _delete_unreferenced(
        self, conn: sqlite3.Connection, files: Iterable[tuple[str, str]]
    ) -> None:
        for sha, ext in files:
            if conn.execute("SELECT 1 FROM images WHERE sha256 = ?", (sha,)).fetchone() is None:
                with contextlib.suppress(FileNotFoundError):
                    self._image_path(sha, ext).unlink()

    def _store_file(self, tx: _Tx, image: CheckedImage) -> None:
        """Copy an image into the content-addressed store (atomically, owner-only)."""
        dest = self._image_path(image.sha256, image.ext)
        if dest.exists():
            return
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(image.data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        tx.new_files.append(dest)

    def _register_encoder(self, tx: _Tx, encoder: str, dim: int) -> None:
        if not isinstance(encoder, str) or not _ENCODER_ID.match(encoder):
            msg = (
                f"encoder id {encoder!r} must be 1-128 characters of letters, digits and "
                "._:@/+- (it comes from the model's manifest)"
            )
            raise InvalidInputError(msg)
        row = tx.conn.execute("SELECT dim FROM encoders WHERE id = ?", (encoder,)).fetchone()
        if row is None:
            tx.conn.execute(
                "INSERT INTO encoders(id, dim, created_at) VALUES (?, ?, ?)",
                (encoder, dim, tx.now),
            )
            tx.conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('active_encoder', ?)", (encoder,)
            )
        elif int(row[0]) != dim:
            msg = f"vectors have dimension {dim}, but encoder {encoder!r} has dimension {row[0]}"
            raise InvalidInputError(msg)

    def _insert_vector(
        self, tx: _Tx, image_id: int, encoder: str, vector: npt.NDArray[np.float32]
    ) -> None:
        cur = tx.conn.execute(
            "INSERT INTO vectors(image_id, encoder_id, vector) VALUES (?, ?, ?) "
            "ON CONFLICT(image_id, encoder_id) DO NOTHING",
            (image_id, encoder, vector.astype("<f4").tobytes()),
        )
        if cur.rowcount == 0:
            # Replacing a vector is a removal (the old key must leave the index) plus an add.
            old = tx.conn.execute(
                "SELECT id FROM vectors WHERE image_id = ? AND encoder_id = ?",
                (image_id, encoder),
            ).fetchall()
            tx.conn.execute(
                "DELETE FROM vectors WHERE image_id = ? AND encoder_id = ?", (image_id, encoder)
            )
            tx.removed.setdefault(encoder, []).extend(int(r[0]) for r in old)
            cur = tx.conn.execute(
                "INSERT INTO vectors(image_id, encoder_id, vector) VALUES (?, ?, ?)",
                (image_id, encoder, vector.astype("<f4").tobytes()),
            )
        tx.added.setdefault(encoder, []).append((int(cur.lastrowid or 0), vector))

    def _insert_image(
        self,
        tx: _Tx,
        concept_id: str,
        image: CheckedImage,
        vector: npt.NDArray[np.float32] | None,
        encoder: str | None,
    ) -> int:
        self._store_file(tx, image)
        cur = tx.conn.execute(
            "INSERT INTO images(concept_id, sha256, ext, width, height, source_name, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(concept_id, sha256) DO NOTHING",
            (
                concept_id,
                image.sha256,
                image.ext,
                image.width,
                image.height,
                image.source_name,
                tx.now,
            ),
        )
        if cur.rowcount == 0:
            msg = f"{image.source_name}: this concept already has that image"
            raise ConflictError(msg)
        image_id = int(cur.lastrowid or 0)
        if vector is not None and encoder is not None:
            self._insert_vector(tx, image_id, encoder, vector)
        return image_id

    def _insert_concept(  # noqa: PLR0913 - the fields of a concept
        self,
        tx: _Tx,
        *,
        name: str,
        category: str,
        info: str,
        aliases: tuple[str, ...],
        images: Sequence[CheckedImage],
        vectors: npt.NDArray[np.float32] | None,
        encoder: str | None,
    ) -> str:
        existing = tx.conn.execute(
            "SELECT id FROM concepts WHERE name = ? COLLATE NOCASE", (name,)
        ).fetchone()
        if existing is not None:
            msg = f"a concept named {name!r} already exists ({existing[0]})"
            raise ConflictError(msg)
        concept_id = f"c_{secrets.token_hex(6)}"
        tx.conn.execute(
            "INSERT INTO concepts(id, name, aliases, category, info, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (concept_id, name, json.dumps(list(aliases)), category, info, tx.now, tx.now),
        )
        if vectors is not None and encoder is not None:
            self._register_encoder(tx, encoder, vectors.shape[1])
        seen: set[str] = set()
        for i, image in enumerate(images):
            if image.sha256 in seen:
                continue  # the same picture given twice
            seen.add(image.sha256)
            vec = None if vectors is None else vectors[i]
            self._insert_image(tx, concept_id, image, vec, encoder)
        return concept_id

    @staticmethod
    def _checked_images(images: Iterable[object]) -> list[CheckedImage]:
        out: list[CheckedImage] = []
        for i, image in enumerate(images):
            if isinstance(image, (bytes, bytearray, memoryview)):
                out.append(check_image_bytes(bytes(image), source=f"image #{i + 1}"))
            elif isinstance(image, (str, os.PathLike)):
                out.append(check_image_file(image))
            else:
                msg = f"image #{i + 1}: expected a file path or encoded bytes, got {type(image)}"
                raise InvalidInputError(msg)
        return out

    @staticmethod
    def _checked_vectors(
        vectors: npt.ArrayLike | None, encoder: str | None, count: int
    ) -> npt.NDArray[np.float32] | None:
        if vectors is None:
            if encoder is not None:
                msg = "an encoder id was given without vectors"
                raise InvalidInputError(msg)
            return None
        if encoder is None:
            msg = "vectors need the id of the encoder that made them (encoder=...)"
            raise InvalidInputError(msg)
        return check_vectors(vectors, dim=None, count=count)

    def add(  # noqa: PLR0913 - the fields of a concept
        self,
        name: str,
        *,
        images: Sequence[ImageLike] = (),
        category: str = "object",
        info: str = "",
        aliases: Sequence[str] = (),
        vectors: npt.ArrayLike | None = None,
        encoder: str | None = None,
    ) -> Concept:
        """Add a concept with its reference images.

        Args:
            name: Display name, unique (case-insensitive).
            images: Image files (paths) or encoded image bytes; copied into the memory.
            category: Such as ``person``, ``dog``, ``mug``.
            info: Free text, at most ``MAX_INFO_CHARS`` characters.
            aliases: Other names.
            vectors: One vector per image, shape [len(images), dim], from ``encoder``. Without
                vectors the images stay pending until an encoder embeds them.
            encoder: Id of the encoder that produced ``vectors``.

        Raises:
            InvalidInputError: on any invalid field, image or vector (nothing is stored).
            ConflictError: if the name is taken.
        """
        item = NewConcept(
            name=name,
            images=images,
            category=category,
            info=info,
            aliases=aliases,
            vectors=vectors,
            encoder=encoder,
        )
        return self.add_many([item])[0]

    def add_many(self, items: Sequence[NewConcept], *, progress: bool = False) -> list[Concept]:
        """Add several concepts in one transaction: all of them, or (on any error) none."""
        from tqdm import tqdm

        checked: list[
            tuple[
                str,
                str,
                str,
                tuple[str, ...],
                list[CheckedImage],
                npt.NDArray[np.float32] | None,
                str | None,
            ]
        ] = []
        names: set[str] = set()
        for item in tqdm(items, desc="checking", unit="concept", disable=not progress or None):
            name = clean_name(item.name)
            if name.casefold() in names:
                msg = f"concept name {name!r} is given twice"
                raise ConflictError(msg)
            names.add(name.casefold())
            images = self._checked_images(item.images)
            checked.append(
                (
                    name,
                    clean_category(item.category),
                    clean_info(item.info),
                    clean_aliases(item.aliases, name=name),
                    images,
                    self._checked_vectors(item.vectors, item.encoder, len(images)),
                    item.encoder,
                )
            )
        with self._writing() as tx:
            ids = [
                self._insert_concept(
                    tx,
                    name=name,
                    category=category,
                    info=info,
                    aliases=aliases,
                    images=images,
                    vectors=vecs,
                    encoder=encoder,
                )
                for name, category, info, aliases, images, vecs, encoder in checked
            ]
        return [self.get(concept_id) for concept_id in ids]

    def update(
        self,
        ref: str,
        *,
        name: str | None = None,
        category: str | None = None,
        info: str | None = None,
        aliases: Sequence[str] | None = None,
    ) -> Concept:
        """Rename a concept or replace its category, info or aliases (None leaves a field)."""
        with self._writing() as tx:
            concept_id = self._resolve_id(tx.conn, ref)
            current = self._concepts(tx.conn, "WHERE id = ?", (concept_id,))[0]
            new_name = current.name if name is None else clean_name(name)
            if new_name.casefold() != current.name.casefold():
                clash = tx.conn.execute(
                    "SELECT id FROM concepts WHERE name = ? COLLATE NOCASE", (new_name,)
                ).fetchone()
                if clash is not None:
                    msg = f"a concept named {new_name!r} already exists ({clash[0]})"
                    raise ConflictError(msg)
            new_aliases = clean_aliases(
                current.aliases if aliases is None else aliases, name=new_name
            )
            tx.conn.execute(
                "UPDATE concepts SET name = ?, category = ?, info = ?, aliases = ?, "
                "updated_at = ? WHERE id = ?",
                (
                    new_name,
                    current.category if category is None else clean_category(category),
                    current.info if info is None else clean_info(info),
                    json.dumps(list(new_aliases)),
                    tx.now,
                    concept_id,
                ),
            )
        return self.get(concept_id)

    def add_image(
        self,
        ref: str,
        image: ImageLike,
        *,
        vector: npt.ArrayLike | None = None,
        encoder: str | None = None,
    ) -> ImageRecord:
        """Add one reference image (and optionally its vector from ``encoder``)."""
        checked = self._checked_images([image])[0]
        vec = self._checked_vectors(vector, encoder, 1)
        with self._writing() as tx:
            concept_id = self._resolve_id(tx.conn, ref)
            if vec is not None and encoder is not None:
                self._register_encoder(tx, encoder, vec.shape[1])
            image_id = self._insert_image(
                tx, concept_id, checked, None if vec is None else vec[0], encoder
            )
            tx.conn.execute(
                "UPDATE concepts SET updated_at = ? WHERE id = ?", (tx.now, concept_id)
            )
        return self._image(image_id)

    def _image(self, image_id: int) -> ImageRecord:
        conn = self._conn()
        row = conn.execute(
            "SELECT id, concept_id, sha256, ext, width, height, source_name, added_at "
            "FROM images WHERE id = ?",
            (image_id,),
        ).fetchone()
        if row is None:
            msg = f"no image with id {image_id}"
            raise ConceptNotFoundError(msg)
        encs = tuple(
            str(r[0])
            for r in conn.execute(
                "SELECT encoder_id FROM vectors WHERE image_id = ? ORDER BY encoder_id",
                (image_id,),
            )
        )
        return self._image_record(row, encs)

    def set_vectors(
        self, image_ids: Sequence[int], vectors: npt.ArrayLike, *, encoder: str
    ) -> None:
        """Store (or replace) the vectors of existing images for ``encoder``."""
        ids = [int(i) for i in image_ids]
        vecs = check_vectors(vectors, dim=None, count=len(ids))
        with self._writing() as tx:
            self._register_encoder(tx, encoder, vecs.shape[1])
            for image_id, vec in zip(ids, vecs, strict=True):
                found = tx.conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,))
                if found.fetchone() is None:
                    msg = f"no image with id {image_id}"
                    raise ConceptNotFoundError(msg)
                self._insert_vector(tx, image_id, encoder, vec)

    def set_active_encoder(self, encoder: str, *, dim: int) -> None:
        """Make ``encoder`` the default for searches; its missing vectors become pending."""
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= MAX_VECTOR_DIM:
            msg = f"dim must be a positive integer, got {dim!r}"
            raise InvalidInputError(msg)
        with self._writing() as tx:
            self._register_encoder(tx, encoder, dim)
            tx.conn.execute(
                "INSERT INTO meta(key, value) VALUES ('active_encoder', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (encoder,),
            )

    def embed_pending(
        self,
        embedder: Embedder,
        *,
        batch_size: int = 16,
        concepts: Collection[str] | None = None,
        activate: bool = True,
        desc: str = "embedding",
    ) -> int:
        """Embed pending images with ``embedder``; return how many.

        Args:
            embedder: The encoder; its id names the vectors.
            batch_size: Images per ``embed`` call, 1..1024.
            concepts: Only images of these concept ids (None: every pending image). The face
                and object paths use it so that a mug never enters the face index.
            activate: Make ``embedder`` the active (default search) encoder first.
            desc: Progress bar label.

        Raises:
            InvalidInputError: on a bad ``batch_size``.
            StoreError: if a stored image is missing or corrupt.
        """
        import cv2
        from tqdm import tqdm

        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not (1 <= batch_size <= 1024)  # noqa: PLR2004
        ):
            msg = f"batch_size must be in 1..1024, got {batch_size!r}"
            raise InvalidInputError(msg)
        if activate:
            self.set_active_encoder(embedder.encoder_id, dim=embedder.dim)
        todo = [
            r
            for r in self.pending(embedder.encoder_id)
            if concepts is None or r.concept_id in concepts
        ]
        with tqdm(total=len(todo), desc=desc, unit="img", disable=None) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                pixels: list[npt.NDArray[np.uint8]] = []
                for rec in batch:
                    img = cv2.imread(str(rec.path), cv2.IMREAD_COLOR)
                    if img is None:
                        msg = f"stored image {rec.path} is missing or corrupt; run `verify`"
                        raise StoreError(msg)
                    pixels.append(np.asarray(img, dtype=np.uint8))
                vecs = embedder.embed(pixels)
                self.set_vectors([r.id for r in batch], vecs, encoder=embedder.encoder_id)
                bar.update(len(batch))
        return len(todo)

    def remove_image(self, image_id: int) -> None:
        """Remove one reference image, its vectors and (if unshared) its file."""
        with self._writing() as tx:
            row = tx.conn.execute(
                "SELECT concept_id, sha256, ext FROM images WHERE id = ?", (int(image_id),)
            ).fetchone()
            if row is None:
                msg = f"no image with id {image_id}"
                raise ConceptNotFoundError(msg)
            for key, enc in tx.conn.execute(
                "SELECT id, encoder_id FROM vectors WHERE image_id = ?", (image_id,)
            ):
                tx.removed.setdefault(str(enc), []).append(int(key))
            tx.conn.execute("DELETE FROM images WHERE id = ?", (int(image_id),))
            tx.conn.execute("UPDATE concepts SET updated_at = ? WHERE id = ?", (tx.now, row[0]))
            tx.maybe_orphaned.add((str(row[1]), str(row[2])))

    def remove(self, ref: str) -> None:
        """Forget a concept: its row, images, files and vectors, then compact.

        After this returns no search names the concept, its image files are deleted (unless
        another concept shares the same picture), and its vectors' bytes are gone from the
        database, the WAL and the index files.
        """
        with self._writing() as tx:
            concept_id = self._resolve_id(tx.conn, ref)
            for key, enc in tx.conn.execute(
                "SELECT v.id, v.encoder_id FROM vectors v JOIN images i "
                "ON i.id = v.image_id WHERE i.concept_id = ?",
                (concept_id,),
            ):
                tx.removed.setdefault(str(enc), []).append(int(key))
            tx.maybe_orphaned.update(
                (str(r[0]), str(r[1]))
                for r in tx.conn.execute(
                    "SELECT sha256, ext FROM images WHERE concept_id = ?", (concept_id,)
                )
            )
            tx.conn.execute("DELETE FROM concepts WHERE id = ?", (concept_id,))

    # -- maintenance -------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check the database, image files, vectors and indexes; change nothing."""
        problems: list[str] = []
        warnings: list[str] = []
        with self._errors():
            conn = self._conn()
            integrity = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
            if integrity != ["ok"]:
                problems.extend(f"database: {line}" for line in integrity[:10])
            for r in conn.execute("PRAGMA foreign_key_check"):
                problems.append(f"database: row {r[1]} of {r[0]} points at a missing {r[2]}")
            known: set[Path] = set()
            for image_id, sha, ext in conn.execute("SELECT id, sha256, ext FROM images"):
                path = self._image_path(sha, ext)
                known.add(path)
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError:
                    problems.append(f"image {image_id}: file {path} is missing")
                    continue
                if digest != sha:
                    problems.append(f"image {image_id}: file {path} does not match its hash")
            for path in sorted((self.path / "images").glob("*/*")):
                if path not in known:
                    warnings.append(
                        f"orphan file {path} (left by an interrupted edit; `vacuum` removes it)"
                    )
            dims = self.encoders()
            for key, enc, blob in conn.execute("SELECT id, encoder_id, vector FROM vectors"):
                vec = np.frombuffer(blob, dtype="<f4")
                if vec.size != dims.get(enc, -1) or not np.isfinite(vec).all():
                    problems.append(f"vector {key} of encoder {enc!r} is malformed")
            for enc in dims:
                generation = self._generation(conn, enc)
                _idx, reason = _index.load_index(
                    self._index_path(enc),
                    encoder_id=enc,
                    generation=generation,
                    dim=dims[enc],
                    dtype=self.index_dtype,
                )
                if reason:
                    warnings.append(f"index of {enc!r} is {reason}; it is rebuilt on next use")
            counts = {
                "concepts": len(self),
                "images": int(conn.execute("SELECT count(*) FROM images").fetchone()[0]),
                "vectors": int(conn.execute("SELECT count(*) FROM vectors").fetchone()[0]),
                "pending": len(self.pending()),
            }
        return VerifyReport(
            ok=not problems, problems=tuple(problems), warnings=tuple(warnings), counts=counts
        )

    def vacuum(self) -> dict[str, int]:
        """Compact: delete orphan files, VACUUM the database, truncate the WAL, rebuild indexes.

        Returns:
            Counts of removed orphan files and rebuilt vectors.
        """
        self._check_writable()
        removed = 0
        with self._errors(), self._file_lock.hold():
            referenced = {
                self._image_path(str(r[0]), str(r[1]))
                for r in self._conn().execute("SELECT sha256, ext FROM images")
            }
            for path in sorted((self.path / "images").glob("*/*")):
                if path not in referenced:
                    path.unlink(missing_ok=True)
                    removed += 1
            for path in (self.path / "index").glob(".*.tmp"):
                path.unlink(missing_ok=True)
            conn = self._conn()
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            vectors = sum(self.rebuild_index().values())
        return {"orphan_files_removed": removed, "vectors_indexed": vectors}
