"""SQLite schema of the concept memory, and its forward migrations.

SQLite is the source of truth for everything, vectors included. Each encoder's ``generation``
is bumped by triggers on every vector insert or delete, so a derived index file records the
generation it was built from and is rebuilt whenever the two disagree, whoever wrote the change.

A new database is made the way an old one is upgraded: the schema of version 1 (:data:`DDL`),
then every migration in turn, so the two can never differ.

Versions:
    1. concepts, images, encoders, vectors.
    2. ``names``: every concept's id, name and aliases under one unique key (Unicode case
       folding after NFC), so no two handles of any concepts can be confused.
    3. ``vectors.checksum``: a CRC-32 of each vector's bytes, so ``verify`` finds a damaged
       row (a vector whose sign bits flipped is still finite and well-formed).
"""

from __future__ import annotations

import unicodedata
import zlib
from typing import TYPE_CHECKING

from rap_edge.errors import SchemaError

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

SCHEMA_VERSION = 4
APPLICATION_ID = 0x52415045  # "RAPE": marks the file as a rap-edge memory

UPDATE_TRIGGER = """
CREATE TRIGGER vectors_update_bumps AFTER UPDATE ON vectors BEGIN
    UPDATE encoders SET generation = generation + 1 WHERE id = NEW.encoder_id;
END;
"""

DDL = (
    """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE concepts (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    aliases    TEXT NOT NULL DEFAULT '[]',      -- JSON array of strings
    category   TEXT NOT NULL,
    info       TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
) STRICT;

CREATE TABLE images (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    concept_id  TEXT NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
    sha256      TEXT NOT NULL,
    ext         TEXT NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    source_name TEXT NOT NULL,
    added_at    REAL NOT NULL,
    UNIQUE (concept_id, sha256)
) STRICT;
CREATE INDEX images_sha ON images(sha256);

CREATE TABLE encoders (
    id         TEXT PRIMARY KEY,
    dim        INTEGER NOT NULL CHECK (dim > 0),
    metric     TEXT NOT NULL DEFAULT 'cos',
    generation INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
) STRICT;

-- AUTOINCREMENT: a vector key (the USearch key) is never reused, even after deletes.
CREATE TABLE vectors (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id   INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    encoder_id TEXT NOT NULL REFERENCES encoders(id) ON DELETE CASCADE,
    vector     BLOB NOT NULL,                 -- little-endian float32[dim]
    UNIQUE (image_id, encoder_id)
) STRICT;
CREATE INDEX vectors_encoder ON vectors(encoder_id);

CREATE TRIGGER vectors_insert_bumps AFTER INSERT ON vectors BEGIN
    UPDATE encoders SET generation = generation + 1 WHERE id = NEW.encoder_id;
END;
CREATE TRIGGER vectors_delete_bumps AFTER DELETE ON vectors BEGIN
    UPDATE encoders SET generation = generation + 1 WHERE id = OLD.encoder_id;
END;
"""
    + UPDATE_TRIGGER
)

NAMES_DDL = """
CREATE TABLE names (
    key        TEXT PRIMARY KEY,              -- name_key(text): NFC, then Unicode case folding
    concept_id TEXT NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('id', 'name', 'alias')),
    text       TEXT NOT NULL                  -- as the user wrote it
) STRICT, WITHOUT ROWID;
CREATE INDEX names_concept ON names(concept_id);
"""


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Add ``names``, registering ids, then names, then aliases, oldest concept first.

    Handles that clashed before (``Élise`` and ``élise``, a name equal to another concept's
    alias) stay with the first to claim them; ``verify`` names the others' clashes.
    """
    import json

    for statement in _statements(NAMES_DDL):
        conn.execute(statement)
    rows = conn.execute(
        "SELECT id, name, aliases FROM concepts ORDER BY created_at, id"
    ).fetchall()
    handles = [(str(r[0]), "id", str(r[0])) for r in rows]
    handles += [(str(r[0]), "name", str(r[1])) for r in rows]
    handles += [(str(r[0]), "alias", str(a)) for r in rows for a in json.loads(r[2])]
    conn.executemany(
        "INSERT OR IGNORE INTO names(key, concept_id, kind, text) VALUES (?, ?, ?, ?)",
        [(name_key(text), cid, kind, text) for cid, kind, text in handles],
    )


def vector_checksum(blob: bytes) -> int:
    """CRC-32 of a stored vector's bytes (``vectors.checksum``, checked by ``verify``)."""
    return zlib.crc32(blob)


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """Add ``vectors.checksum`` and fill it in, without bumping any encoder's generation.

    Filling it in is no change of the vectors, so the index files stay current.
    """
    conn.execute("ALTER TABLE vectors ADD COLUMN checksum INTEGER")
    conn.create_function("rap_vector_checksum", 1, vector_checksum, deterministic=True)
    conn.execute("DROP TRIGGER vectors_update_bumps")
    conn.execute("UPDATE vectors SET checksum = rap_vector_checksum(vector)")
    for statement in _statements(UPDATE_TRIGGER):
        conn.execute(statement)


# Who or what was seen, when, by which camera (one row per visit; rap_edge.web.Sightings
# writes them). Rows go with their concept (ON DELETE CASCADE): forgetting a concept from any
# front end forgets where it was seen, in the same transaction.
SIGHTINGS_DDL = """
CREATE TABLE sightings (
    id         INTEGER PRIMARY KEY,
    concept_id TEXT NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
    camera     TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    count      INTEGER NOT NULL
) STRICT;
CREATE INDEX sightings_concept ON sightings(concept_id, last_seen);
CREATE INDEX sightings_last ON sightings(last_seen);
"""


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """Add ``sightings``."""
    for statement in _statements(SIGHTINGS_DDL):
        conn.execute(statement)


# MIGRATIONS[v] upgrades a database from schema version v to v + 1, inside one transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
}


def name_key(text: str) -> str:
    """The key under which a name, alias or id is unique: canonical caseless matching.

    ``Élise``, ``élise`` and ``E\u0301LISE`` share a key, as do ``Straße`` and ``STRASSE``
    (Unicode case folding of the canonical decomposition, recomposed to NFC).
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text.strip()).casefold())


def create(conn: sqlite3.Connection, *, created_at: float, version: int = SCHEMA_VERSION) -> None:
    """Create the schema in an empty database (caller holds a write transaction).

    Args:
        conn: The connection, inside a write transaction.
        created_at: Time stamp recorded in ``meta``.
        version: Schema version to create; older ones exist only to test migrations.
    """
    for statement in _statements(DDL):
        conn.execute(statement)
    for step in range(1, version):
        MIGRATIONS[step](conn)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?)",
        [("schema_version", str(version)), ("created_at", repr(created_at))],
    )


def read_version(conn: sqlite3.Connection, *, path: str) -> int:
    """Return the schema version of an existing memory database.

    Raises:
        SchemaError: if the file is not a rap-edge memory.
    """
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != APPLICATION_ID:
        msg = f"{path} is not a rap-edge memory database (application id {app_id:#x})"
        raise SchemaError(msg)
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, *, version: int, path: str) -> int:
    """Bring the database forward to :data:`SCHEMA_VERSION`; return the version it had.

    Raises:
        SchemaError: if it was written by a newer rap-edge, or no migration path exists.
    """
    if version > SCHEMA_VERSION:
        msg = (
            f"{path} was written by a newer rap-edge (schema {version}; this version reads up "
            f"to {SCHEMA_VERSION}). Upgrade rap-edge to open it."
        )
        raise SchemaError(msg)
    start = version
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated it while this one waited for the lock.
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version >= SCHEMA_VERSION:
                conn.execute("COMMIT")
                break
            _step(version, path)(conn)
            version += 1
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return start


def _step(version: int, path: str) -> Callable[[sqlite3.Connection], None]:
    step = MIGRATIONS.get(version)
    if step is None:
        msg = f"{path}: no migration from schema {version} to {version + 1}"
        raise SchemaError(msg)
    return step


def _statements(script: str) -> list[str]:
    """Split a DDL script into statements (triggers hold inner semicolons)."""
    out: list[str] = []
    buf: list[str] = []
    for raw in script.splitlines():
        line = raw.split("--", 1)[0].rstrip()
        if not line:
            continue
        buf.append(line)
        text = "\n".join(buf)
        if text.endswith(";") and (
            not text.lstrip().startswith("CREATE TRIGGER") or text.endswith("END;")
        ):
            out.append(text)
            buf = []
    return out
