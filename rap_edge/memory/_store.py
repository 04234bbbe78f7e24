"""The concept memory: SQLite as the source of truth, one derived USearch index per encoder.

:class:`Memory` is the public face; its parts live beside it: the database connections
(:mod:`._db`), the read and write SQL (:mod:`._queries`, :mod:`._edits`), the image files
(:mod:`._files`), the live indexes (:mod:`._cache`), and verify / vacuum
(:mod:`._maintenance`). Embedding images with a model is not the memory's job: see
:mod:`rap_edge.embed`.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np

from rap_edge.errors import (
    ConceptNotFoundError,
    ConfigError,
    ConflictError,
    InvalidInputError,
    MemoryReadOnlyError,
    SchemaError,
    StoreError,
)
from rap_edge.interfaces import SearchHit
from rap_edge.memory import _index, _maintenance, _queries, _schema, _upkeep
from rap_edge.memory._cache import IndexCache, IndexState
from rap_edge.memory._db import DB_NAME, Database
from rap_edge.memory._edits import (
    CheckedConcept,
    Tx,
    check_concept,
    checked_images,
    checked_vectors,
    delete_concept,
    delete_image,
    insert_concept,
    insert_image,
    insert_vector,
    register_encoder,
    update_concept,
)
from rap_edge.memory._files import ImageStore
from rap_edge.memory._locks import FileLock
from rap_edge.memory._maintenance import VerifyReport
from rap_edge.memory._validate import (
    MAX_VECTOR_DIM,
    check_vectors,
    clean_category,
    clean_name,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Collection, Iterator, Sequence
    from typing import Self

    import numpy.typing as npt

    from rap_edge.interfaces import Concept, Embedder, ImageRecord
    from rap_edge.memory._locks import ReadWriteLock

__all__ = ["ImageLike", "Memory", "NewConcept", "VerifyReport", "default_memory_dir"]

LOCK_NAME = ".write.lock"
ImageLike: TypeAlias = "str | os.PathLike[str] | bytes"
_MAX_K = 1000
# A day: longer waits are a typo, and SQLite's busy timeout (in ms) must fit in 32 bits.
MAX_LOCK_TIMEOUT_S = 86_400.0


def default_memory_dir() -> Path:
    """``$RAP_EDGE_MEMORY`` if set, else ``memory`` under the user's data folder."""
    env = os.environ.get("RAP_EDGE_MEMORY")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("rap-edge")) / "memory"


def _check_new(item: NewConcept, names: set[str]) -> CheckedConcept:
    """Check one concept of a batch; ``names`` holds the batch's names so far."""
    name = clean_name(item.name)
    key = _schema.name_key(name)
    if key in names:
        msg = f"concept name {name!r} is given twice"
        raise ConflictError(msg)
    names.add(key)
    return check_concept(item)


def _label(item: NewConcept) -> str:
    """How a concept to add is named in an error: its name and aliases, as given."""
    text = repr(item.name) if isinstance(item.name, str) else type(item.name).__name__
    aliases = [a for a in item.aliases if isinstance(a, str)][:3]
    return text + (f" aka {', '.join(aliases)}" if aliases else "")


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
        if (
            isinstance(lock_timeout_s, bool)
            or not isinstance(lock_timeout_s, (int, float))
            or not 0 < lock_timeout_s <= MAX_LOCK_TIMEOUT_S
        ):
            msg = (
                f"lock timeout (lock_timeout_s) must be a number of seconds in "
                f"(0, {MAX_LOCK_TIMEOUT_S:g}], got {lock_timeout_s!r}"
            )
            raise InvalidInputError(msg)
        if index_dtype is not None and index_dtype not in _index.INDEX_DTYPES:
            msg = f"index_dtype must be one of {', '.join(_index.INDEX_DTYPES)}: {index_dtype!r}"
            raise InvalidInputError(msg)
        if create and readonly:
            msg = "a memory cannot be created read-only"
            raise InvalidInputError(msg)
        self.path = Path(path).expanduser().resolve()
        self.readonly = readonly
        self._db = Database(self.path, readonly=readonly, timeout_s=lock_timeout_s)
        self._files = ImageStore(self.path / "images")
        self._closed = False
        if create:
            self._db.create(index_dtype or "f16")
        elif not (self.path / DB_NAME).exists():
            msg = f"no memory at {self.path} (create one with `rap-edge memory init {self.path}`)"
            raise StoreError(msg)
        self._file_lock = FileLock(self.path / LOCK_NAME, timeout_s=lock_timeout_s)
        with self._db.errors():
            conn = self._db.conn()
            version = _schema.read_version(conn, path=str(self._db.path))
            if version < _schema.SCHEMA_VERSION and readonly:
                msg = (
                    f"{self._db.path} has schema {version} and needs an upgrade; run "
                    f"`rap-edge memory init {self.path}` once to migrate it"
                )
                raise SchemaError(msg)
            if version != _schema.SCHEMA_VERSION:
                _schema.migrate(conn, version=version, path=str(self._db.path))
            self.index_dtype: str = _queries.meta(conn, "index_dtype") or "f16"
        self._cache = IndexCache(
            self.path / "index",
            dtype=self.index_dtype,
            readonly=readonly,
            file_lock=self._file_lock,
        )
        self._unfinished: dict[str, str] = {}
        if not readonly:
            self._upkeep_after_open()

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
        self._db.close()
        if hasattr(self, "_file_lock"):
            self._file_lock.close()
        if hasattr(self, "_cache"):
            self._cache.clear()

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        return self._db.conn()

    @property
    def _indexes(self) -> dict[str, IndexState]:
        """The live index of each encoder loaded in this process."""
        return self._cache.states

    @property
    def _rw(self) -> ReadWriteLock:
        """Searches read :attr:`_indexes` under its shared side."""
        return self._cache.lock

    def _index_path(self, encoder_id: str) -> Path:
        return self._cache.path(encoder_id)

    def _check_writable(self) -> None:
        if self.readonly:
            msg = f"memory {self.path} was opened read-only"
            raise MemoryReadOnlyError(msg)

    # -- reading -----------------------------------------------------------------------------

    def get(self, ref: str) -> Concept:
        """Return the concept with this id or name (names match case-insensitively).

        Raises:
            ConceptNotFoundError: if there is none.
        """
        with self._db.errors():
            conn = self._conn()
            concept_id = _queries.resolve_id(conn, ref)
            found = _queries.concepts(conn, self._files, "WHERE id = ?", (concept_id,))
        if not found:  # removed by another writer between the two reads
            msg = f"no concept with id or name {ref!r}"
            raise ConceptNotFoundError(msg)
        return found[0]

    def list_concepts(self, *, category: str | None = None) -> list[Concept]:
        """All concepts (optionally of one category), sorted by name."""
        with self._db.errors():
            conn = self._conn()
            if category is None:
                return _queries.concepts(conn, self._files, "", ())
            where = "WHERE category = ?"
            return _queries.concepts(conn, self._files, where, (clean_category(category),))

    def categories(self) -> set[str]:
        """The distinct categories of the concepts (one query; no concept is loaded)."""
        with self._db.errors():
            rows = self._conn().execute("SELECT DISTINCT category FROM concepts").fetchall()
        return {str(r[0]) for r in rows}

    def __len__(self) -> int:
        """Number of concepts."""
        with self._db.errors():
            return int(self._conn().execute("SELECT count(*) FROM concepts").fetchone()[0])

    @property
    def active_encoder(self) -> str | None:
        """The encoder searches use by default (None until one is registered)."""
        with self._db.errors():
            return _queries.meta(self._conn(), "active_encoder")

    def encoders(self) -> dict[str, int]:
        """Registered encoders and their vector dimensions."""
        with self._db.errors():
            rows = self._conn().execute("SELECT id, dim FROM encoders ORDER BY id").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def pending(self, encoder: str | None = None) -> list[ImageRecord]:
        """Images that have no vector yet for ``encoder`` (default: the active encoder).

        With no encoder registered at all, every image is pending.
        """
        with self._db.errors():
            conn = self._conn()
            enc = encoder or _queries.meta(conn, "active_encoder")
            return _queries.pending(conn, self._files, enc or "")

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
        with self._db.errors():
            conn = self._conn()
            enc = self._default_encoder(conn, encoder)
            queries = check_vectors(vectors, dim=_queries.encoder_dim(conn, enc), what="query")
            self._cache.refresh(conn, enc)
            with self._rw.read():
                state = self._indexes[enc]
                return [self._search_one(conn, state, enc, q, k, threshold) for q in queries]

    def _search_one(  # noqa: PLR0913, PLR0917 - private, called in one place
        self,
        conn: sqlite3.Connection,
        state: IndexState,
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
        enc = encoder or _queries.meta(conn, "active_encoder")
        if enc is None:
            msg = "this memory has no vectors yet: add images with vectors from an encoder first"
            raise ConfigError(msg)
        return enc

    def rebuild_index(self, encoder: str | None = None) -> dict[str, int]:
        """Rebuild (and save) the index of one encoder, or of all; return vectors per encoder."""
        self._check_writable()
        with self._db.errors(), self._file_lock.hold():
            targets = [encoder] if encoder else list(self.encoders())
            return self._cache.rebuild(self._conn(), targets)

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Tx]:
        """One write transaction, exclusive in-process and across processes.

        Searches are never blocked by the SQL work, the file copies or index builds and saves;
        they wait only while the live index is patched (microseconds per vector). After the
        commit, still holding the writer lock, unreferenced image files are deleted.
        """
        self._check_writable()
        with self._db.errors(), self._file_lock.hold():
            self._cache.writer_active = True
            try:
                conn = self._conn()
                conn.execute("BEGIN IMMEDIATE")
                tx = Tx(conn=conn, now=time.time())
                before = self._cache.generations(conn)
                try:
                    yield tx
                    # Upkeep is due until it is done; a kill or a full disk cannot lose it.
                    forgets = bool(tx.removed or tx.maybe_orphaned)
                    due_before = _upkeep.set_marker(conn) if forgets else _upkeep.is_marked(conn)
                    conn.execute("COMMIT")
                except BaseException as err:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    new = {(p.stem, p.suffix[1:]) for p in tx.new_files}
                    self._files.delete_unreferenced(conn, new)
                    self._db.raise_if_disk_full(err, done="the edit was rolled back")
                    raise
                to_save, to_build = self._cache.patch(conn, tx.added, tx.removed, before)
            finally:
                self._cache.writer_active = False
            # Committed: from here on nothing fails the edit; what is left is said instead.
            self._finish_edit(conn, tx, to_save, to_build, full=due_before)

    def _finish_edit(
        self,
        conn: sqlite3.Connection,
        tx: Tx,
        to_save: set[str],
        to_build: set[str],
        *,
        full: bool,
    ) -> None:
        """After a commit, holding the writer lock: delete files, save indexes, merge the WAL."""
        left = _upkeep.run(
            conn,
            self._files,
            self._cache,
            orphaned=tx.maybe_orphaned,
            to_save=to_save,
            to_build=to_build,
            full=full,
            merge_wal=bool(tx.removed or tx.maybe_orphaned),
        )
        done = {f"index:{enc}" for enc in to_save | to_build}
        if full or tx.removed or tx.maybe_orphaned:
            done |= {"files", "wal"}
        self._record_upkeep(left, done=None if full else done)

    def _record_upkeep(self, left: dict[str, str], *, done: set[str] | None) -> None:
        """Update :attr:`unfinished` after an upkeep run that tried ``done`` (None: all)."""
        if done is None:
            self._unfinished.clear()
        else:
            for key in done:
                self._unfinished.pop(key, None)
        self._unfinished.update(left)

    def _upkeep_after_open(self) -> None:
        """Finish what an earlier edit left undone (a kill or a full disk); never fails."""
        try:
            with self._db.errors(), self._file_lock.hold(blocking=False) as held:
                conn = self._conn()
                if not held or not _upkeep.is_marked(conn):
                    return
                left = _upkeep.run(
                    conn,
                    self._files,
                    self._cache,
                    orphaned=set(),
                    to_save=set(),
                    to_build=set(),
                    full=True,
                    merge_wal=True,
                )
        except StoreError as err:
            left = {"open": f"unfinished upkeep of an earlier edit could not run ({err})"}
        self._record_upkeep(left, done=None)

    @property
    def unfinished(self) -> tuple[str, ...]:
        """What the edits of this object left unfinished after their commit (each a sentence).

        Empty when all is done. An edit is committed even when its upkeep is not: a full
        disk can keep an index from being saved, an image file from being deleted or the
        WAL from being merged. Each sentence says what remains and what finishes it (the
        next writable open, the next edit, or :meth:`vacuum`).
        """
        return tuple(self._unfinished.values())

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

        checked: list[CheckedConcept] = []
        names: set[str] = set()
        bar = tqdm(items, desc="checking", unit="concept", disable=not progress or None)
        for i, item in enumerate(bar):
            try:
                checked.append(_check_new(item, names))
            except (InvalidInputError, ConflictError) as err:
                if len(items) == 1:
                    raise
                # In a long batch (an import), say which concept is at fault.
                msg = f"concept {i + 1} of {len(items)} ({_label(item)}): {err}"
                raise type(err)(msg) from err
        with self._writing() as tx:
            ids = [insert_concept(tx, self._files, concept) for concept in checked]
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
            concept_id = update_concept(
                tx, self._files, ref, name=name, category=category, info=info, aliases=aliases
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
        checked = checked_images([image])[0]
        vec = checked_vectors(vector, encoder, 1)
        with self._writing() as tx:
            concept_id = _queries.resolve_id(tx.conn, ref)
            if vec is not None and encoder is not None:
                register_encoder(tx, encoder, vec.shape[1])
            image_id = insert_image(
                tx, self._files, concept_id, checked, None if vec is None else vec[0], encoder
            )
            tx.conn.execute(
                "UPDATE concepts SET updated_at = ? WHERE id = ?", (tx.now, concept_id)
            )
        with self._db.errors():
            return _queries.image(self._conn(), self._files, image_id)

    def set_vectors(
        self, image_ids: Sequence[int], vectors: npt.ArrayLike, *, encoder: str
    ) -> None:
        """Store (or replace) the vectors of existing images for ``encoder``."""
        ids = [int(i) for i in image_ids]
        vecs = check_vectors(vectors, dim=None, count=len(ids))
        with self._writing() as tx:
            register_encoder(tx, encoder, vecs.shape[1])
            for image_id, vec in zip(ids, vecs, strict=True):
                found = tx.conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,))
                if found.fetchone() is None:
                    msg = f"no image with id {image_id}"
                    raise ConceptNotFoundError(msg)
                insert_vector(tx, image_id, encoder, vec)

    def set_active_encoder(self, encoder: str, *, dim: int) -> None:
        """Make ``encoder`` the default for searches; its missing vectors become pending."""
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= MAX_VECTOR_DIM:
            msg = f"dim must be a positive integer, got {dim!r}"
            raise InvalidInputError(msg)
        with self._writing() as tx:
            register_encoder(tx, encoder, dim)
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

        Kept for compatibility (tests and ``memory rebuild-index --manifest`` call it); the
        work, which reads pixels with OpenCV, is :func:`rap_edge.embed.embed_images`. Stops
        at the first image that cannot be embedded (``rap_edge.embed.embed_pending`` skips
        and reports such images instead).

        Args:
            embedder: The encoder; its id names the vectors.
            batch_size: Images per ``embed`` call, 1..1024.
            concepts: Only images of these concept ids (None: every pending image).
            activate: Make ``embedder`` the active (default search) encoder first.
            desc: Progress bar label.

        Raises:
            InvalidInputError: on a bad ``batch_size``.
            StoreError: if a stored image is missing or corrupt.
        """
        from rap_edge.embed import embed_images

        return embed_images(
            self, embedder, batch_size=batch_size, concepts=concepts, activate=activate, desc=desc
        )[0]

    def remove_image(self, image_id: int) -> None:
        """Remove one reference image, its vectors and (if unshared) its file."""
        with self._writing() as tx:
            delete_image(tx, int(image_id))

    def remove(self, ref: str) -> None:
        """Forget a concept: its row, images, files and vectors, then compact.

        After this returns no search names the concept, its image files are deleted (unless
        another concept shares the same picture), and its vectors' bytes are gone from the
        database, the WAL and the index files. Should a full disk stop any of that after the
        commit, the concept is still forgotten, :attr:`unfinished` says what is left, and the
        next writable open or :meth:`vacuum` finishes it.
        """
        with self._writing() as tx:
            delete_concept(tx, ref)

    # -- maintenance -------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check the database, image files, vectors and indexes; change nothing."""
        return _maintenance.verify(self)

    def vacuum(self) -> dict[str, int]:
        """Compact: delete orphan files, VACUUM the database, truncate the WAL, rebuild indexes.

        Returns:
            Counts of removed orphan files and rebuilt vectors.

        Raises:
            StoreError: after compacting, if image files of the memory are missing.
        """
        return _maintenance.vacuum(self)
