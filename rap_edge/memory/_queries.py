"""Read-side SQL of the memory: rows to :class:`Concept` and :class:`ImageRecord`, lookups."""

from __future__ import annotations

import json
import unicodedata
from typing import TYPE_CHECKING, Any

from rap_edge.errors import ConceptNotFoundError, InvalidInputError
from rap_edge.interfaces import Concept, ImageRecord
from rap_edge.memory._schema import name_key

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from rap_edge.memory._files import ImageStore

__all__ = [
    "concepts",
    "encoder_dim",
    "generation",
    "handle_owner",
    "image",
    "meta",
    "pending",
    "resolve_id",
]

_IMAGE_COLUMNS = "id, concept_id, sha256, ext, width, height, source_name, added_at"


def meta(conn: sqlite3.Connection, key: str) -> str | None:
    """A value of the ``meta`` table (None if unset)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def generation(conn: sqlite3.Connection, encoder_id: str) -> int:
    """The edit counter of ``encoder_id`` (-1 if it is not registered)."""
    row = conn.execute("SELECT generation FROM encoders WHERE id = ?", (encoder_id,))
    found = row.fetchone()
    return -1 if found is None else int(found[0])


def encoder_dim(conn: sqlite3.Connection, encoder_id: str) -> int:
    """The vector dimension of ``encoder_id``.

    Raises:
        ConceptNotFoundError: if the encoder is not registered.
    """
    row = conn.execute("SELECT dim FROM encoders WHERE id = ?", (encoder_id,)).fetchone()
    if row is None:
        msg = f"encoder {encoder_id!r} has no vectors in this memory"
        raise ConceptNotFoundError(msg)
    return int(row[0])


def resolve_id(conn: sqlite3.Connection, ref: str) -> str:
    """The id of the concept with this id or name (matched by :func:`name_key`: any case)."""
    if not isinstance(ref, str) or not ref.strip():
        msg = f"a concept is named by its id or name, got {ref!r}"
        raise InvalidInputError(msg)
    ref = unicodedata.normalize("NFC", ref.strip())
    row = conn.execute(
        "SELECT concept_id FROM names WHERE key = ? AND kind IN ('id', 'name')",
        (name_key(ref),),
    ).fetchone()
    if row is None:
        # A name that clashed with another handle before schema 2 is not in ``names``.
        row = conn.execute(
            "SELECT id FROM concepts WHERE id = ? OR name = ? COLLATE NOCASE "
            "ORDER BY id = ? DESC LIMIT 1",
            (ref, ref, ref),
        ).fetchone()
    if row is None:
        msg = f"no concept with id or name {ref!r}"
        raise ConceptNotFoundError(msg)
    return str(row[0])


def handle_owner(conn: sqlite3.Connection, key: str) -> tuple[str, str, str, str] | None:
    """Who holds a :func:`name_key`: (concept id, kind, text as written, concept name)."""
    row = conn.execute(
        "SELECT n.concept_id, n.kind, n.text, c.name FROM names n "
        "JOIN concepts c ON c.id = n.concept_id WHERE n.key = ?",
        (key,),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), str(row[2]), str(row[3]))


def concepts(
    conn: sqlite3.Connection, files: ImageStore, where: str, args: Sequence[Any]
) -> list[Concept]:
    """The concepts matching ``where`` (an SQL clause with ``?`` marks), sorted by name."""
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
        f"SELECT {_IMAGE_COLUMNS} FROM images WHERE concept_id IN ({marks}) ORDER BY id",
        ids,
    ):
        images[r[1]].append(_image_record(files, r, tuple(encs.get(int(r[0]), ()))))
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


def image(conn: sqlite3.Connection, files: ImageStore, image_id: int) -> ImageRecord:
    """The image with this id.

    Raises:
        ConceptNotFoundError: if there is none.
    """
    row = conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
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
    return _image_record(files, row, encs)


def pending(conn: sqlite3.Connection, files: ImageStore, encoder: str) -> list[ImageRecord]:
    """Images that have no vector from ``encoder``, by id."""
    rows = conn.execute(
        f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE NOT EXISTS (SELECT 1 FROM vectors v "
        "WHERE v.image_id = i.id AND v.encoder_id = ?) ORDER BY id",
        (encoder,),
    ).fetchall()
    return [_image_record(files, r, ()) for r in rows]


def _image_record(files: ImageStore, r: Sequence[Any], encoders: tuple[str, ...]) -> ImageRecord:
    return ImageRecord(
        id=int(r[0]),
        concept_id=str(r[1]),
        sha256=str(r[2]),
        path=files.path(str(r[2]), str(r[3])),
        width=int(r[4]),
        height=int(r[5]),
        source_name=str(r[6]),
        added_at=float(r[7]),
        encoders=encoders,
    )
