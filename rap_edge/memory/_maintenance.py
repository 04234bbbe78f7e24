"""Checking and compacting a memory: :func:`verify` and :func:`vacuum`."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import StoreError
from rap_edge.memory import _upkeep
from rap_edge.memory._queries import generation
from rap_edge.memory._schema import name_key, vector_checksum

if TYPE_CHECKING:
    from pathlib import Path

    from rap_edge.memory._files import ImageStore
    from rap_edge.memory._store import Memory

__all__ = ["VerifyReport", "vacuum", "verify"]

_SHOWN = 5  # missing files named in vacuum's error


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


def verify(memory: Memory) -> VerifyReport:
    """Check the database, image files, vectors and indexes; change nothing."""
    db, files, cache = memory._db, memory._files, memory._cache  # noqa: SLF001 - its own parts
    problems: list[str] = []
    warnings: list[str] = []
    with db.errors():
        conn = db.conn()
        integrity = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            problems.extend(f"database: {line}" for line in integrity[:10])
        for r in conn.execute("PRAGMA foreign_key_check"):
            problems.append(f"database: row {r[1]} of {r[0]} points at a missing {r[2]}")
        known: set[Path] = set()
        for image_id, sha, ext in conn.execute("SELECT id, sha256, ext FROM images"):
            path = files.path(sha, ext)
            known.add(path)
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                problems.append(f"image {image_id}: file {path} is missing")
                continue
            if digest != sha:
                problems.append(f"image {image_id}: file {path} does not match its hash")
        for path in files.files():
            if path not in known:
                warnings.append(
                    f"orphan file {path} (left by an interrupted edit; `vacuum` removes it)"
                )
        _check_handles(conn, problems, warnings)
        if _upkeep.is_marked(conn):
            warnings.append(
                "an earlier edit's upkeep is unfinished (a full disk or a kill after its "
                "commit): the next writable open of the memory or `vacuum` finishes it"
            )
        dims = memory.encoders()
        for key, enc, blob, checksum, name in conn.execute(
            "SELECT v.id, v.encoder_id, v.vector, v.checksum, c.name FROM vectors v "
            "LEFT JOIN images i ON i.id = v.image_id "
            "LEFT JOIN concepts c ON c.id = i.concept_id ORDER BY v.id"
        ):
            what = f"vector {key} of encoder {enc!r} (image of {name!r})"
            if len(blob) % 4:
                problems.append(f"{what} is malformed")
                continue
            vec = np.frombuffer(blob, dtype="<f4")
            if vec.size != dims.get(enc, -1) or not np.isfinite(vec).all():
                problems.append(f"{what} is malformed")
            elif checksum is None:
                problems.append(f"{what} has no checksum")
            elif vector_checksum(bytes(blob)) != checksum:
                problems.append(f"{what} does not match its checksum")
        for enc, dim in dims.items():
            reason = cache.stale_reason(enc, generation=generation(conn, enc), dim=dim)
            if reason:
                warnings.append(f"index of {enc!r} is {reason}; it is rebuilt on next use")
        counts = {
            "concepts": len(memory),
            "images": int(conn.execute("SELECT count(*) FROM images").fetchone()[0]),
            "vectors": int(conn.execute("SELECT count(*) FROM vectors").fetchone()[0]),
            "pending": len(memory.pending()),
        }
    return VerifyReport(
        ok=not problems, problems=tuple(problems), warnings=tuple(warnings), counts=counts
    )


_KIND_PHRASE = {"id": "the id of", "name": "the name of", "alias": "an alias of"}


def _check_handles(conn: sqlite3.Connection, problems: list[str], warnings: list[str]) -> None:
    """Check that every id, name and alias is registered in ``names`` under its concept.

    A handle that clashed with another concept's before schema 2 is a warning naming both.
    """
    owners = {
        str(r[0]): (str(r[1]), str(r[2]), str(r[3]))
        for r in conn.execute("SELECT key, concept_id, kind, text FROM names")
    }
    names = {str(r[0]): str(r[1]) for r in conn.execute("SELECT id, name FROM concepts")}
    expected: set[tuple[str, str]] = set()
    for cid, name, aliases in conn.execute("SELECT id, name, aliases FROM concepts"):
        handles = [("id", str(cid)), ("name", str(name))]
        handles += [("alias", str(a)) for a in json.loads(aliases)]
        for kind, text in handles:
            key = name_key(text)
            expected.add((key, str(cid)))
            owner = owners.get(key)
            if owner is None:
                problems.append(f"database: {kind} {text!r} of {cid} is missing from names")
            elif owner[0] != cid:
                warnings.append(
                    f"{kind} {text!r} of {name!r} ({cid}) is also {_KIND_PHRASE[owner[1]]} "
                    f"{names.get(owner[0], '?')!r} ({owner[0]}), from before names, aliases "
                    "and ids had to differ; rename one with `rap-edge memory update`"
                )
    for key, (cid, kind, text) in owners.items():
        if (key, cid) not in expected:
            problems.append(f"database: names holds {kind} {text!r} that {cid} no longer has")


def vacuum(memory: Memory) -> dict[str, int]:
    """Compact: delete orphan files, VACUUM the database, truncate the WAL, rebuild indexes.

    Returns:
        Counts of removed orphan files and rebuilt vectors.
    """
    memory._check_writable()  # noqa: SLF001 - its own check
    db, files, cache = memory._db, memory._files, memory._cache  # noqa: SLF001 - its own parts
    with db.errors(), memory._file_lock.hold():  # noqa: SLF001 - one writer at a time
        conn = db.conn()
        removed = files.delete_orphans(conn)
        # First whatever an earlier edit left unfinished (so a forget completes even if the
        # compaction below runs out of space), then the compaction.
        left = _upkeep.run(
            conn,
            files,
            cache,
            orphaned=set(),
            to_save=set(),
            to_build=set(),
            full=True,
            merge_wal=True,
        )
        memory._record_upkeep(left, done=None)  # noqa: SLF001 - its own record
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            vectors = sum(memory.rebuild_index().values())
        except (sqlite3.Error, OSError, StoreError) as err:
            why = db.disk_full(err) or _upkeep.describe(err)
            state = " ".join(memory.unfinished) or (
                "What earlier edits left unfinished (forgotten files, outdated indexes, the "
                "WAL) is done."
            )
            msg = f"memory {memory.path}: vacuum could not compact it ({why}). {state}"
            raise StoreError(msg) from err
        if memory.unfinished:
            msg = (
                f"memory {memory.path}: vacuum left work unfinished: {' '.join(memory.unfinished)}"
            )
            raise StoreError(msg)
        missing = [
            f"image {image_id} of {name!r} ({path})"
            for image_id, name, path in _image_files(conn, files)
            if not path.is_file()
        ]
    if missing:
        more = len(missing) - _SHOWN
        shown = "; ".join(missing[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        msg = (
            f"vacuum compacted the memory ({removed} orphan file(s) removed, {vectors} "
            f"vector(s) re-indexed), but {len(missing)} image file(s) are missing: {shown}. "
            "Re-add those pictures, or drop them with `rap-edge memory update CONCEPT "
            "--remove-image ID`"
        )
        raise StoreError(msg)
    return {"orphan_files_removed": removed, "vectors_indexed": vectors}


def _image_files(conn: sqlite3.Connection, files: ImageStore) -> list[tuple[int, str, Path]]:
    """(image id, concept name, stored file) of every image."""
    return [
        (int(r[0]), str(r[1]), files.path(str(r[2]), str(r[3])))
        for r in conn.execute(
            "SELECT i.id, c.name, i.sha256, i.ext FROM images i "
            "JOIN concepts c ON c.id = i.concept_id ORDER BY i.id"
        )
    ]
