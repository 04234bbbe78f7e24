"""Import and export of the RAP project's ``database.json`` layout.

RAP (Retrieval-Augmented Personalization, CVPR 2025) keeps its concepts in a folder holding the
images and a ``database.json``::

    {"concept_dict": {"<bo>": {"name": "bo", "image": "example_database/bo.png",
                               "info": "<bo> is a Shiba Inu ...", "category": "dog"}},
     "path_to_concept": {"example_database/bo.png": "<bo>"}}

Image paths are relative to the folder RAP was run from (the database folder's parent in its
example). RAP looks every image file of the folder up in ``path_to_concept``, so several files
may map to one token; ``image`` holds one path (we also accept a list).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from rap_edge.errors import ConflictError, InvalidInputError, StoreError
from rap_edge.memory._schema import name_key
from rap_edge.memory._store import NewConcept

if TYPE_CHECKING:
    import os

    from rap_edge.interfaces import Concept
    from rap_edge.memory._store import Memory

_TOKEN = re.compile(r"^<[^<>\s]{1,64}>$")
MAX_DATABASE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What :func:`export_rap` wrote.

    Attributes:
        database: Path of the written ``database.json``.
        concepts: Number of concepts exported.
        images: Number of image files written.
        skipped: Names of concepts left out because they have no image (RAP needs one).
    """

    database: Path
    concepts: int
    images: int
    skipped: tuple[str, ...]


def _load_json(path: Path) -> dict[str, object]:
    from rap_edge.sources._files import read_user_file

    # A regular file under the limit: /dev/zero or a FIFO is refused, never read forever.
    raw = read_user_file(path, max_bytes=MAX_DATABASE_BYTES, what="file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        msg = f"{path}: not UTF-8 text ({err.reason} at byte {err.start})"
        raise InvalidInputError(msg) from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        msg = f"{path}: invalid JSON at line {err.lineno} column {err.colno} ({err.msg})"
        raise InvalidInputError(msg) from err
    except RecursionError as err:
        msg = f"{path}: JSON nested too deeply to be a RAP database"
        raise InvalidInputError(msg) from err
    if not isinstance(data, dict) or not isinstance(data.get("concept_dict"), dict):
        msg = f"{path}: not a RAP database (expected an object with a 'concept_dict' object)"
        raise InvalidInputError(msg)
    return data


def _resolve_image(raw: object, *, roots: list[Path], where: str) -> Path:
    """Resolve one image path of the JSON against the candidate roots, refusing escapes."""
    if not isinstance(raw, str) or not raw.strip():
        msg = f"{where}: image path must be a non-empty string, got {raw!r}"
        raise InvalidInputError(msg)
    if "\x00" in raw:  # the OS cannot name such a file (Path.resolve would raise)
        msg = f"{where}: image path {raw!r} contains a NUL character"
        raise InvalidInputError(msg)
    rel = PurePosixPath(raw.strip().replace("\\", "/"))
    if rel.is_absolute() or re.match(r"^[A-Za-z]:", raw):
        msg = f"{where}: image path {raw!r} is absolute; RAP paths must be relative"
        raise InvalidInputError(msg)
    for root in roots:
        candidate = (root / rel).resolve()
        if not candidate.is_relative_to(root):
            msg = f"{where}: image path {raw!r} escapes the root folder {root}"
            raise InvalidInputError(msg)
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(root) for root in roots)
    msg = f"{where}: image {raw!r} not found under {tried}"
    raise InvalidInputError(msg)


def _text(entry: dict[str, object], key: str, *, where: str, default: str | None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        if value is None:
            msg = f"{where}: missing '{key}'"
        else:
            msg = f"{where}: '{key}' must be a string, got {type(value).__name__}"
        raise InvalidInputError(msg)
    return value


def read_rap(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> list[NewConcept]:
    """Parse and check a RAP ``database.json``; every problem raises before anything is added.

    Args:
        path: The ``database.json`` file.
        root: Folder the image paths are relative to. Default: the JSON's folder, then its
            parent (RAP's example writes ``example_database/bo.png`` beside the JSON).

    Returns:
        One :class:`NewConcept` per token, the token kept as an alias.
    """
    json_path = Path(path).expanduser().resolve()
    data = _load_json(json_path)
    roots = (
        [Path(root).expanduser().resolve()]
        if root is not None
        else [json_path.parent, json_path.parent.parent]
    )
    concept_dict = data["concept_dict"]
    assert isinstance(concept_dict, dict)  # noqa: S101 - checked by _load_json; for mypy
    path_to_concept = data.get("path_to_concept", {})
    if not isinstance(path_to_concept, dict):
        msg = f"{json_path}: 'path_to_concept' must be an object"
        raise InvalidInputError(msg)
    extra: dict[str, list[str]] = {}
    for img, token in path_to_concept.items():
        if not isinstance(token, str):
            msg = (
                f"{json_path}: path_to_concept maps {img!r} to a {type(token).__name__}; "
                "it must be a concept token (a string such as '<bo>')"
            )
            raise InvalidInputError(msg)
        if token not in concept_dict:
            msg = f"{json_path}: path_to_concept maps {img!r} to unknown concept {token!r}"
            raise InvalidInputError(msg)
        extra.setdefault(str(token), []).append(img)
    items: list[NewConcept] = []
    for token, entry in concept_dict.items():
        where = f"{json_path.name}: concept {token!r}"
        if not isinstance(entry, dict):
            msg = f"{where}: must be an object"
            raise InvalidInputError(msg)
        name = _text(entry, "name", where=where, default=None)
        raw_images = entry.get("image")
        listed = [raw_images] if isinstance(raw_images, str) else raw_images
        if not isinstance(listed, list) or not listed:
            msg = f"{where}: 'image' must be a path or a non-empty list of paths"
            raise InvalidInputError(msg)
        paths: list[Path] = []
        for raw in [*listed, *extra.get(token, [])]:
            resolved = _resolve_image(raw, roots=roots, where=where)
            if resolved not in paths:
                paths.append(resolved)
        # Keep the token as an alias: an export gives it back, and questions can name it.
        aliases = [token] if _TOKEN.match(token) else []
        items.append(
            NewConcept(
                name=name,
                images=paths,
                category=_text(entry, "category", where=where, default="object"),
                info=_text(entry, "info", where=where, default=""),
                aliases=aliases,
            )
        )
    return items


def import_rap(
    memory: Memory,
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    on_conflict: Literal["error", "skip"] = "error",
    progress: bool = False,
) -> list[Concept]:
    """Import a RAP database into ``memory`` atomically: everything, or nothing.

    Args:
        memory: Target memory.
        path: The ``database.json`` file.
        root: Folder the image paths are relative to (see :func:`read_rap`).
        on_conflict: ``error`` refuses the whole import if a name exists already; ``skip``
            leaves existing concepts alone and imports the rest.
        progress: Show a progress bar while images are checked.

    Returns:
        The concepts added. Their images stay pending until an encoder embeds them.
    """
    if on_conflict not in {"error", "skip"}:
        msg = f"on_conflict must be 'error' or 'skip', got {on_conflict!r}"
        raise InvalidInputError(msg)
    items = read_rap(path, root=root)
    existing = {name_key(c.name) for c in memory.list_concepts()}
    clashes = [item.name for item in items if name_key(item.name) in existing]
    if clashes and on_conflict == "error":
        msg = (
            f"{len(clashes)} concept(s) already in the memory: {', '.join(clashes[:5])} "
            "(use on_conflict='skip' / --skip-existing to import the others)"
        )
        raise ConflictError(msg)
    todo = [item for item in items if name_key(item.name) not in existing]
    return memory.add_many(todo, progress=progress)


def _token_for(concept: Concept, taken: set[str]) -> str:
    for alias in concept.aliases:
        if _TOKEN.match(alias) and alias not in taken:
            return alias
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", concept.name).strip("_") or "concept"
    token, n = f"<{base}>", 2
    while token in taken:
        token, n = f"<{base}_{n}>", n + 1
    return token


def export_rap(
    memory: Memory, out_dir: str | os.PathLike[str], *, prefix: str | None = None
) -> ExportResult:
    """Write the memory as a RAP database folder that RAP's own code can read.

    The folder gets the images and ``database.json`` (and nothing else: RAP indexes every
    image file in it). Paths are written as ``<prefix>/<file>``, the prefix defaulting to the
    folder's name, so RAP run from the folder's parent with ``--database <prefix>`` finds them.

    Raises:
        InvalidInputError: if ``out_dir`` exists and is not empty.
    """
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        msg = f"{out} exists and is not an empty folder; choose a new folder"
        raise InvalidInputError(msg)
    prefix = out.name if prefix is None else prefix.strip("/")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a failed export leaves no half-written folder.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        concept_dict: dict[str, dict[str, str]] = {}
        path_to_concept: dict[str, str] = {}
        skipped: list[str] = []
        taken: set[str] = set()
        n_images = 0
        for concept in memory.list_concepts():
            if not concept.images:
                skipped.append(concept.name)
                continue
            token = _token_for(concept, taken)
            taken.add(token)
            stem = token.strip("<>")
            rel_paths: list[str] = []
            for i, image in enumerate(concept.images):
                file_name = f"{stem}{'' if i == 0 else f'_{i + 1}'}{image.path.suffix}"
                try:
                    shutil.copyfile(image.path, staging / file_name)
                except FileNotFoundError as err:
                    msg = (
                        f"cannot export concept {concept.name!r}: its image {image.id} "
                        f"({image.path}) is missing from the memory; run `rap-edge memory "
                        "verify`, then re-add the picture or remove that image"
                    )
                    raise StoreError(msg) from err
                except OSError as err:
                    msg = (
                        f"cannot export concept {concept.name!r}: copying image {image.id} "
                        f"({image.path}) failed ({err.strerror or err})"
                    )
                    raise StoreError(msg) from err
                rel = f"{prefix}/{file_name}" if prefix else file_name
                rel_paths.append(rel)
                path_to_concept[rel] = token
                n_images += 1
            concept_dict[token] = {
                "name": concept.name,
                "image": rel_paths[0],
                "info": concept.info,
                "category": concept.category,
            }
        db = staging / "database.json"
        db.write_text(
            json.dumps(
                {"concept_dict": concept_dict, "path_to_concept": path_to_concept},
                indent=4,
                ensure_ascii=False,
            )
            + "\n",
            encoding="utf-8",
        )
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(
        database=out / "database.json",
        concepts=len(concept_dict),
        images=n_images,
        skipped=tuple(skipped),
    )
