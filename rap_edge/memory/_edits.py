"""Write-side SQL of the memory: the rows of concepts, images, vectors and encoders.

Each function runs inside one write transaction (:class:`Tx`) and records what it changed,
which the memory applies to its live indexes and image files once the transaction commits.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rap_edge.errors import ConceptNotFoundError, ConflictError, InvalidInputError
from rap_edge.memory import _queries, _schema
from rap_edge.memory._validate import (
    check_image_bytes,
    check_image_file,
    check_vectors,
    clean_aliases,
    clean_category,
    clean_info,
    clean_name,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

    from rap_edge.memory._files import ImageStore
    from rap_edge.memory._store import NewConcept
    from rap_edge.memory._validate import CheckedImage

__all__ = [
    "CheckedConcept",
    "Tx",
    "check_concept",
    "checked_images",
    "checked_vectors",
    "delete_concept",
    "delete_image",
    "insert_concept",
    "insert_image",
    "insert_vector",
    "register_encoder",
    "update_concept",
]

_ENCODER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")


@dataclass
class Tx:
    """What one write transaction did, applied to indexes and files after it commits."""

    conn: sqlite3.Connection
    now: float
    added: dict[str, list[tuple[int, npt.NDArray[np.float32]]]] = field(default_factory=dict)
    removed: dict[str, list[int]] = field(default_factory=dict)  # encoder -> vector keys
    new_files: list[Path] = field(default_factory=list)
    maybe_orphaned: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class CheckedConcept:
    """The fields of a :class:`NewConcept`, checked and cleaned (before any transaction)."""

    name: str
    category: str
    info: str
    aliases: tuple[str, ...]
    images: list[CheckedImage]
    vectors: npt.NDArray[np.float32] | None
    encoder: str | None


def check_concept(item: NewConcept) -> CheckedConcept:
    """Check every field, image and vector of a concept to add.

    Raises:
        InvalidInputError: on any invalid field, image or vector.
    """
    name = clean_name(item.name)
    images = checked_images(item.images)
    return CheckedConcept(
        name=name,
        category=clean_category(item.category),
        info=clean_info(item.info),
        aliases=clean_aliases(item.aliases, name=name),
        images=images,
        vectors=checked_vectors(item.vectors, item.encoder, len(images)),
        encoder=item.encoder,
    )


def register_encoder(tx: Tx, encoder: str, dim: int) -> None:
    """Register ``encoder`` with ``dim`` (the first one also becomes the active encoder).

    Raises:
        InvalidInputError: on a malformed id, or a dimension other than the registered one.
    """
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


def insert_vector(tx: Tx, image_id: int, encoder: str, vector: npt.NDArray[np.float32]) -> None:
    """Store (or replace) the vector of an image for ``encoder``."""
    blob = vector.astype("<f4").tobytes()
    checksum = _schema.vector_checksum(blob)
    cur = tx.conn.execute(
        "INSERT INTO vectors(image_id, encoder_id, vector, checksum) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(image_id, encoder_id) DO NOTHING",
        (image_id, encoder, blob, checksum),
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
            "INSERT INTO vectors(image_id, encoder_id, vector, checksum) VALUES (?, ?, ?, ?)",
            (image_id, encoder, blob, checksum),
        )
    tx.added.setdefault(encoder, []).append((int(cur.lastrowid or 0), vector))


def insert_image(  # noqa: PLR0913, PLR0917 - the parts of an image row
    tx: Tx,
    files: ImageStore,
    concept_id: str,
    image: CheckedImage,
    vector: npt.NDArray[np.float32] | None,
    encoder: str | None,
) -> int:
    """Store the file and add its ``images`` row (and vector); return the image id.

    Raises:
        ConflictError: if the concept already has this picture.
    """
    new_file = files.store(image)
    if new_file is not None:
        tx.new_files.append(new_file)
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
        insert_vector(tx, image_id, encoder, vector)
    return image_id


_KIND_PHRASE = {"id": "the id of", "name": "the name of", "alias": "an alias of"}


def _handles(concept_id: str, name: str, aliases: Iterable[str]) -> list[tuple[str, str]]:
    """(kind, text) of every handle of a concept: its id, name and aliases."""
    return [("id", concept_id), ("name", name), *(("alias", a) for a in aliases)]


def _free_handles(
    tx: Tx,
    concept_id: str,
    handles: Sequence[tuple[str, str]],
    *,
    grandfathered: frozenset[str] = frozenset(),
) -> list[tuple[str, str, str]]:
    """Check that no other concept holds these handles; return the (key, kind, text) to claim.

    A handle the concept holds already, or one that repeats another of its handles, is
    skipped. ``grandfathered`` keys clashed before names had to differ (schema 1) and are
    left unclaimed, as they were.

    Raises:
        ConflictError: naming the handle and the concept that holds it.
    """
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for kind, text in handles:
        key = _schema.name_key(text)
        if key in seen:
            continue
        seen.add(key)
        if tx.conn.execute("SELECT 1 FROM names WHERE key = ?", (key,)).fetchone() is None:
            out.append((key, kind, text))
            continue
        owner = _queries.handle_owner(tx.conn, key)
        if owner is None:  # not reachable with foreign keys on; then the key is free
            out.append((key, kind, text))
            continue
        other_id, other_kind, other_text, other_name = owner
        if other_id == concept_id or key in grandfathered:
            continue
        if kind == "name" and other_kind == "name":
            msg = f"a concept named {other_text!r} already exists ({other_id})"
        else:
            msg = (
                f"{kind} {text!r} is already {_KIND_PHRASE[other_kind]} {other_name!r} "
                f"({other_id}): names, aliases and ids must all differ"
            )
        raise ConflictError(msg)
    return out


def _claim(tx: Tx, concept_id: str, claims: Iterable[tuple[str, str, str]]) -> None:
    tx.conn.executemany(
        "INSERT INTO names(key, concept_id, kind, text) VALUES (?, ?, ?, ?)",
        [(key, concept_id, kind, text) for key, kind, text in claims],
    )


def _new_id(tx: Tx) -> str:
    """A fresh concept id that is no handle of any concept yet."""
    while True:
        concept_id = f"c_{secrets.token_hex(6)}"
        if tx.conn.execute("SELECT 1 FROM names WHERE key = ?", (concept_id,)).fetchone() is None:
            return concept_id


def insert_concept(tx: Tx, files: ImageStore, concept: CheckedConcept) -> str:
    """Add a concept row and its images; return its new id.

    Raises:
        ConflictError: if its name or an alias is another concept's name, alias or id.
    """
    concept_id = _new_id(tx)
    claims = _free_handles(tx, concept_id, _handles(concept_id, concept.name, concept.aliases))
    tx.conn.execute(
        "INSERT INTO concepts(id, name, aliases, category, info, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            concept_id,
            concept.name,
            json.dumps(list(concept.aliases)),
            concept.category,
            concept.info,
            tx.now,
            tx.now,
        ),
    )
    _claim(tx, concept_id, claims)
    vectors, encoder = concept.vectors, concept.encoder
    if vectors is not None and encoder is not None:
        register_encoder(tx, encoder, vectors.shape[1])
    seen: set[str] = set()
    for i, image in enumerate(concept.images):
        if image.sha256 in seen:
            continue  # the same picture given twice
        seen.add(image.sha256)
        vec = None if vectors is None else vectors[i]
        insert_image(tx, files, concept_id, image, vec, encoder)
    return concept_id


def update_concept(  # noqa: PLR0913 - the fields of a concept
    tx: Tx,
    files: ImageStore,
    ref: str,
    *,
    name: str | None,
    category: str | None,
    info: str | None,
    aliases: Sequence[str] | None,
) -> str:
    """Rename a concept or replace its category, info or aliases; return its id.

    Raises:
        ConflictError: if the new name or an alias is another concept's name, alias or id.
    """
    concept_id = _queries.resolve_id(tx.conn, ref)
    current = _queries.concepts(tx.conn, files, "WHERE id = ?", (concept_id,))[0]
    new_name = current.name if name is None else clean_name(name)
    new_aliases = clean_aliases(current.aliases if aliases is None else aliases, name=new_name)
    held = {
        str(r[0])
        for r in tx.conn.execute("SELECT key FROM names WHERE concept_id = ?", (concept_id,))
    }
    before = {_schema.name_key(h) for h in (current.name, *current.aliases)}
    tx.conn.execute(
        "DELETE FROM names WHERE concept_id = ? AND kind IN ('name', 'alias')", (concept_id,)
    )
    claims = _free_handles(
        tx,
        concept_id,
        _handles(concept_id, new_name, new_aliases),
        grandfathered=frozenset(before - held),
    )
    _claim(tx, concept_id, claims)
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
    return concept_id


def delete_image(tx: Tx, image_id: int) -> None:
    """Delete an image row and its vectors (its file goes after the commit if unshared)."""
    row = tx.conn.execute(
        "SELECT concept_id, sha256, ext FROM images WHERE id = ?", (image_id,)
    ).fetchone()
    if row is None:
        msg = f"no image with id {image_id}"
        raise ConceptNotFoundError(msg)
    for key, enc in tx.conn.execute(
        "SELECT id, encoder_id FROM vectors WHERE image_id = ?", (image_id,)
    ):
        tx.removed.setdefault(str(enc), []).append(int(key))
    tx.conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
    tx.conn.execute("UPDATE concepts SET updated_at = ? WHERE id = ?", (tx.now, row[0]))
    tx.maybe_orphaned.add((str(row[1]), str(row[2])))


def delete_concept(tx: Tx, ref: str) -> None:
    """Delete a concept, its images and vectors (files go after the commit if unshared)."""
    concept_id = _queries.resolve_id(tx.conn, ref)
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


def checked_images(images: Iterable[object]) -> list[CheckedImage]:
    """Decode-check image paths or encoded bytes (before any transaction starts)."""
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


def checked_vectors(
    vectors: npt.ArrayLike | None, encoder: str | None, count: int
) -> npt.NDArray[np.float32] | None:
    """``count`` vectors from ``encoder`` as float32, or None when there are none."""
    if vectors is None:
        if encoder is not None:
            msg = "an encoder id was given without vectors"
            raise InvalidInputError(msg)
        return None
    if encoder is None:
        msg = "vectors need the id of the encoder that made them (encoder=...)"
        raise InvalidInputError(msg)
    return check_vectors(vectors, dim=None, count=count)
