"""``rap-edge memory ...``: create, edit, inspect and maintain a concept memory."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.runtime import Provider

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rap_edge.app import Session
    from rap_edge.embed import EmbedReport
    from rap_edge.interfaces import Concept, SearchHit
    from rap_edge.memory import Memory


def _memory_dir(args: argparse.Namespace) -> Path:
    from rap_edge.memory import default_memory_dir

    return Path(args.memory).expanduser() if args.memory else default_memory_dir()


@contextlib.contextmanager
def _open(args: argparse.Namespace, *, readonly: bool = False) -> Iterator[Memory]:
    """The memory, closed afterwards; what its edits left unfinished is said on stderr.

    An edit is done once committed, even when a full disk stops what follows (an index
    save, deleting a forgotten image file, merging the WAL): the command then exits 0 and
    says what is left and what finishes it.
    """
    from rap_edge.memory import Memory

    with Memory(_memory_dir(args), readonly=readonly, lock_timeout_s=args.lock_timeout) as memory:
        try:
            yield memory
        finally:
            for line in memory.unfinished:
                print(f"rap-edge: warning: {line}", file=sys.stderr)


def _jsonable(value: Any) -> Any:  # noqa: ANN401 - any dataclass tree
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _print_json(value: Any) -> None:  # noqa: ANN401 - any dataclass tree
    print(json.dumps(_jsonable(value), indent=2, ensure_ascii=False))


def _concept_line(c: Concept) -> str:
    pending = sum(1 for img in c.images if not img.encoders)
    extra = f", {pending} pending" if pending else ""
    aliases = f" (aka {', '.join(c.aliases)})" if c.aliases else ""
    return f"{c.id}  {c.name}{aliases}  [{c.category}]  {len(c.images)} image(s){extra}"


def _show(c: Concept) -> None:
    print(_concept_line(c))
    if c.info:
        print(f"  info: {c.info}")
    for img in c.images:
        encs = ", ".join(img.encoders) or "pending (no vector yet)"
        print(f"  image {img.id}: {img.width}x{img.height} {img.source_name} -> {img.path}")
        print(f"    vectors: {encs}")


def _load_vectors(path: str) -> Any:  # noqa: ANN401 - a numpy array
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        msg = f"{path}: not a readable .npy array ({err})"
        raise InvalidInputError(msg) from err


MAX_INFO_FILE_BYTES = 64 * 1024
"""The largest ``--info-file`` read (the info itself is capped at 4000 characters)."""


def _read_info(args: argparse.Namespace) -> str | None:
    if getattr(args, "info_file", None):
        from rap_edge.sources._files import read_user_file

        # A regular file only (never /dev/zero or a FIFO), and never more than the cap.
        data = read_user_file(args.info_file, max_bytes=MAX_INFO_FILE_BYTES, what="info file")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            msg = f"{args.info_file}: cannot read as UTF-8 text ({err})"
            raise InvalidInputError(msg) from err
    info: str | None = args.info
    return info


# -- commands ----------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from rap_edge.memory import Memory

    path = Path(args.dir).expanduser() if args.dir else _memory_dir(args)
    existed = (path / "memory.db").exists()
    with Memory.init(path, index_dtype=args.index_dtype) as memory:
        state = "already exists" if existed else "created"
        print(
            f"memory {state} at {memory.path} ({len(memory)} concepts, index {memory.index_dtype})"
        )
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from rap_edge.pipeline import is_object_category

    vectors = _load_vectors(args.vectors) if args.vectors else None
    info = _read_info(args) or ""
    face_concept = not is_object_category(args.category)
    if (args.face is not None or args.largest) and not face_concept:
        msg = "--face and --largest pick a face in a photo of a person; this is an object"
        raise InvalidInputError(msg)
    if args.whole_image and face_concept:
        raise InvalidInputError(WHOLE_IMAGE_FOR_OBJECTS)
    embedded = cropped = note = ""
    with _open(args) as memory:
        session = None
        if vectors is not None:
            pass
        elif face_concept:
            session = _face_session(args, memory)
        elif args.image:  # an object's photos are cut to the detected object (and embedded) now
            session, note = _object_session(args, memory, args.category)
        if session is not None:  # embed at once: every command recognises it from now on
            with session:
                concept = session.add_concept(
                    args.name,
                    args.category,
                    info=info,
                    aliases=args.alias,
                    files=[Path(p) for p in args.image],
                    face=args.face,
                    largest=args.largest,
                )
                embedded, cropped = _encoder_used(session, args.category)
        else:
            if args.face is not None or args.largest:
                msg = (
                    "--face and --largest need the face models to find the faces "
                    "(`make models`, or --models DIR)"
                )
                raise ModelStoreError(msg)
            concept = memory.add(
                args.name,
                images=args.image,
                category=args.category,
                info=info,
                aliases=args.alias,
                vectors=vectors,
                encoder=args.encoder,
            )
    if args.json:
        _print_json(asdict(concept))
    else:
        print(f"added {_concept_line(concept)}")
    if note:
        print(note, file=sys.stderr)
    if embedded and cropped and concept.images:
        print(
            f"embedded {len(concept.images)} object image(s) with {embedded}, each cropped to "
            f"the largest {cropped} found in it: `run --objects` recognises it from now on",
            file=sys.stderr,
        )
    elif embedded and concept.images:
        print(
            f"embedded {len(concept.images)} face image(s) with {embedded}: `ask`, `run` and "
            "the demo recognise it from now on",
            file=sys.stderr,
        )
    elif face_concept and vectors is None and concept.images:
        print(
            "the image(s) wait for the face models: after `make models`, run "
            "`rap-edge memory embed-faces` (any `run` or `ask` also embeds them first)",
            file=sys.stderr,
        )
    return 0


WHOLE_IMAGE_FOR_OBJECTS = (
    "--whole-image keeps an object's or pet's whole photo; a person's photo is cut around the "
    "face (use --face N or --largest to pick one)"
)


def _encoder_used(session: Session, category: str) -> tuple[str, str]:
    """The encoder that embedded an edit's photos, and the detector classes they were cut to."""
    from rap_edge.pipeline._objects import detector_classes, is_object_category

    objects = session.objects
    if objects is None or objects.detector is None or not is_object_category(category):
        return session.models.encoder_id, ""
    classes = detector_classes(category, objects.detector.labels)
    return objects.encoder_id, " or ".join(sorted(classes))


def _object_session(
    args: argparse.Namespace, memory: Memory, category: str
) -> tuple[Session | None, str]:
    """A session that cuts an object's photos to the detected object, or None and why.

    None (the photos are stored whole and wait for ``memory embed-objects``, as before the
    detector) with ``--whole-image`` or ``--no-embed``, without the models, without an
    object detector, or for a category no detector class maps to. The reason is a note to
    print once the edit is done.
    """
    from rap_edge.cli._options import open_session
    from rap_edge.pipeline._objects import detector_classes

    if args.no_embed or args.whole_image:
        return None, ""
    try:
        session = open_session(args, memory=memory, embed=False, say=False, objects=True)
    except ModelStoreError as err:
        if args.models:  # asked for by name: a missing or damaged model is an error
            raise
        first = str(err).splitlines()[0]
        return None, f"object models not loaded ({first}): the photos are kept whole"
    objects = session.objects
    if objects is None or objects.detector is None:
        session.close()
        return None, ""
    if not detector_classes(category, objects.detector.labels):
        session.close()
        return None, (
            f"category {category!r} has no detector class (see docs/objects.md): its photos "
            "are kept whole"
        )
    return session, ""


def _face_session(args: argparse.Namespace, memory: Memory) -> Session | None:
    """A session over ``memory`` with the face models, or None (saying why) without them."""
    from rap_edge.cli._options import open_session

    if args.no_embed:
        return None
    try:
        return open_session(args, memory=memory, embed=False, say=False)
    except ModelStoreError as err:
        if args.models:  # asked for by name: a missing or damaged model is an error
            raise
        first = str(err).splitlines()[0]
        print(f"face models not loaded ({first})", file=sys.stderr)
        return None


def cmd_list(args: argparse.Namespace) -> int:
    with _open(args, readonly=True) as memory:
        concepts = memory.list_concepts(category=args.category)
    if args.json:
        _print_json([asdict(c) for c in concepts])
    elif not concepts:
        print("no concepts")
    else:
        for c in concepts:
            print(_concept_line(c))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _open(args, readonly=True) as memory:
        concept = memory.get(args.concept)
    if args.json:
        _print_json(asdict(concept))
    else:
        _show(concept)
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from rap_edge.pipeline import is_object_category

    info = _read_info(args)
    picks = args.face is not None or args.largest
    if picks and not args.add_image:
        msg = "--face and --largest pick a face in a photo given with --add-image"
        raise InvalidInputError(msg)
    if args.whole_image and not args.add_image:
        msg = "--whole-image keeps the whole of a photo given with --add-image"
        raise InvalidInputError(msg)
    embedded = cropped = note = ""
    with _open(args) as memory:
        current = memory.get(args.concept)
        aliases = None
        if args.add_alias or args.remove_alias:
            drop = {a.casefold() for a in args.remove_alias}
            aliases = [a for a in current.aliases if a.casefold() not in drop] + args.add_alias
        category = args.category or current.category
        face_concept = not is_object_category(category)
        if picks and not face_concept:
            msg = "--face and --largest pick a face in a photo of a person; this is an object"
            raise InvalidInputError(msg)
        if args.whole_image and face_concept:
            raise InvalidInputError(WHOLE_IMAGE_FOR_OBJECTS)
        # New photos of a person: the rule of `memory add` (one face, or --face N / --largest
        # picks one), embedded at once when the face models are present. New photos of an
        # object: cut to the detected object (unless --whole-image) and embedded at once.
        session = None
        if args.add_image and face_concept:
            session = _face_session(args, memory)
        elif args.add_image:
            session, note = _object_session(args, memory, category)
        if session is not None:
            with session:
                session.update_concept(
                    current.id,
                    name=args.name,
                    category=args.category,
                    info=info,
                    aliases=aliases,
                    add_files=[Path(p) for p in args.add_image],
                    face=args.face,
                    largest=args.largest,
                )
                embedded, cropped = _encoder_used(session, category)
        else:
            if picks:
                msg = (
                    "--face and --largest need the face models to find the faces "
                    "(`make models`, or --models DIR)"
                )
                raise ModelStoreError(msg)
            if any(v is not None for v in (args.name, args.category, info, aliases)):
                memory.update(
                    current.id, name=args.name, category=args.category, info=info, aliases=aliases
                )
            for image in args.add_image:
                memory.add_image(current.id, image)
        for image_id in args.remove_image:
            if image_id not in {img.id for img in current.images}:
                msg = f"concept {current.name!r} has no image {image_id}"
                raise InvalidInputError(msg)
            memory.remove_image(image_id)
        concept = memory.get(current.id)
    if args.json:
        _print_json(asdict(concept))
    else:
        print(f"updated {_concept_line(concept)}")
    if note:
        print(note, file=sys.stderr)
    if embedded and cropped:
        print(
            f"embedded {len(args.add_image)} new object image(s) with {embedded}, each "
            f"cropped to the largest {cropped} found in it",
            file=sys.stderr,
        )
    elif embedded:
        print(
            f"embedded {len(args.add_image)} new face image(s) with {embedded}",
            file=sys.stderr,
        )
    elif args.add_image and face_concept:
        print(
            "the new image(s) wait for the face models: after `make models`, run "
            "`rap-edge memory embed-faces` (any `run` or `ask` also embeds them first)",
            file=sys.stderr,
        )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        for ref in args.concept:
            concept = memory.get(ref)
            memory.remove(concept.id)
            print(
                f"removed {concept.name} ({concept.id}): its images, vectors and index "
                "entries are deleted"
            )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    encoder = args.encoder
    if args.text:
        if not args.text_encoder:
            msg = "--text needs --text-encoder MANIFEST (an exported CLIP/SigLIP text tower)"
            raise InvalidInputError(msg)
        from rap_edge.models import TextEncoder

        text = TextEncoder(args.text_encoder, provider=args.provider)
        queries = text.embed(args.text)
        # Text vectors live in the paired image encoder's space: search its index.
        encoder = encoder or text.image_encoder_id
    else:
        queries = _load_vectors(args.vectors)
    with _open(args, readonly=True) as memory:
        results = memory.search(queries, k=args.k, threshold=args.threshold, encoder=encoder)
    if args.json:
        _print_json([[asdict(h) for h in hits] for hits in results])
        return 0
    for i, hits in enumerate(results):
        print(f"query {i}: " + (_hits_text(hits) or "unknown (nothing above the threshold)"))
    return 0


def _hits_text(hits: list[SearchHit]) -> str:
    return ", ".join(f"{h.name} ({h.score:.3f})" for h in hits)


def cmd_import_rap(args: argparse.Namespace) -> int:
    from rap_edge.memory import import_rap

    with _open(args) as memory:
        added = import_rap(
            memory,
            args.database,
            root=args.root,
            on_conflict="skip" if args.skip_existing else "error",
            progress=True,
        )
        pending = len(memory.pending())
    if args.json:
        _print_json([asdict(c) for c in added])
    else:
        for c in added:
            print(f"imported {_concept_line(c)}")
        print(
            f"{len(added)} concept(s) imported; {pending} image(s) wait for an encoder "
            "(`rap-edge memory rebuild-index` embeds them once one is installed)"
        )
    return 0


def cmd_export_rap(args: argparse.Namespace) -> int:
    from rap_edge.memory import export_rap

    with _open(args, readonly=True) as memory:
        result = export_rap(memory, args.out, prefix=args.prefix)
    print(f"wrote {result.database}: {result.concepts} concept(s), {result.images} image(s)")
    if result.skipped:
        print(f"skipped (no image, RAP needs one): {', '.join(result.skipped)}")
    return 0


def cmd_rebuild_index(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        if args.manifest:
            from rap_edge.models import Encoder

            encoder = Encoder(args.manifest, provider=args.provider)
            n = memory.embed_pending(encoder)
            print(f"embedded {n} pending image(s) with {encoder.encoder_id} on {encoder.provider}")
        counts = memory.rebuild_index(args.encoder)
        pending = memory.pending(args.encoder)
        active = memory.active_encoder
    for enc, n in counts.items():
        print(f"index of {enc}: {n} vector(s)")
    if not counts:
        print("no encoder has vectors yet; nothing to index")
    if pending:
        # Image encoders arrive with `rap-edge models`; until then vectors come from the API.
        print(
            f"{len(pending)} image(s) have no vector for {active or 'any encoder'}; embed "
            "them with `--manifest MODEL.json` (an exported encoder, see `make models`) or "
            "supply vectors with `memory add --vectors`"
        )
    return 0


def _print_skipped(report: EmbedReport) -> None:
    for s in report.skipped:
        print(f"skipped {s.concept}: image {s.image_id} ({s.path}): {s.reason}")


def cmd_embed_faces(args: argparse.Namespace) -> int:
    from rap_edge.cli._options import open_session
    from rap_edge.embed import embed_pending
    from rap_edge.pipeline import FaceEmbedder

    with _open(args) as memory:
        models = open_session(args, memory=memory, embed=False, say=False).models
        embedder = FaceEmbedder(models)
        report = embed_pending(memory, faces=embedder, progress=sys.stderr.isatty())
    _print_skipped(report)
    print(
        f"embedded {report.faces} face image(s) with {models.encoder_id} on "
        f"{models.encoder.provider}"
        + (
            f" ({embedder.fallbacks} without a detected face: used whole, as a face crop)"
            if embedder.fallbacks
            else ""
        )
    )
    return 0


def cmd_embed_objects(args: argparse.Namespace) -> int:
    from rap_edge.cli._options import open_session
    from rap_edge.embed import embed_pending
    from rap_edge.pipeline import ObjectEmbedder

    with _open(args) as memory:
        session = open_session(args, memory=memory, embed=False, say=False, objects=True)
        objects = session.objects
        assert objects is not None  # noqa: S101 - asked for with objects=True
        report = embed_pending(
            memory, objects=ObjectEmbedder(objects), progress=sys.stderr.isatty()
        )
    _print_skipped(report)
    print(
        f"embedded {report.objects} object image(s) with {objects.encoder_id} on "
        f"{objects.encoder.provider}"
    )
    return 0


def cmd_enroll_unknown(args: argparse.Namespace) -> int:
    from rap_edge.cli._options import open_session
    from rap_edge.pipeline import UnknownClusters

    folder = Path(args.unknown_dir) if args.unknown_dir else _memory_dir(args) / "unknown"
    clusters = UnknownClusters(folder, threshold=0.0)
    with _open(args) as memory:
        session = open_session(args, memory=memory, embed=False, say=False)
        concept, crops = session.enroll_unknown(
            clusters, args.cluster, name=args.name, category=args.category, info=args.info or ""
        )
        faces = session.embedded.faces if session.embedded is not None else 0
    print(
        f"enrolled {_concept_line(concept)} from cluster {args.cluster} ({crops} "
        f"crop(s)); embedded {faces} face image(s)"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with _open(args, readonly=True) as memory:
        report = memory.verify()
    if args.json:
        _print_json(asdict(report))
    else:
        for line in report.problems:
            print(f"PROBLEM: {line}")
        for line in report.warnings:
            print(f"warning: {line}")
        counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
        print(("ok" if report.ok else "FAILED") + f": {counts}")
    return 0 if report.ok else 2


def cmd_vacuum(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        before = _size(memory.path)
        result = memory.vacuum()
        after = _size(memory.path)
    print(
        f"removed {result['orphan_files_removed']} orphan file(s), re-indexed "
        f"{result['vectors_indexed']} vector(s); {before} -> {after} bytes on disk"
    )
    return 0


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- parser ------------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``memory`` and its subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--memory",
        metavar="DIR",
        default=None,
        help="memory folder (default: $RAP_EDGE_MEMORY, else the user data folder)",
    )
    common.add_argument(
        "--lock-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for another writer (default: 10)",
    )
    with_json = argparse.ArgumentParser(add_help=False)
    with_json.add_argument("--json", action="store_true", help="print JSON instead of text")

    memory = sub.add_parser(
        "memory",
        help="create, edit and inspect the concept memory",
        description="The concept memory: people, pets and objects the device should know.",
    )
    cmds = memory.add_subparsers(dest="memory_command", metavar="ACTION", required=True)

    def add(
        name: str,
        func: Any,  # noqa: ANN401
        help_text: str,
        *,
        json_out: bool = False,
    ) -> argparse.ArgumentParser:
        parents = [common, with_json] if json_out else [common]
        p = cmds.add_parser(name, parents=parents, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("init", cmd_init, "create a memory folder (no-op if one exists)")
    p.add_argument("dir", nargs="?", help="folder to create (default: as --memory)")
    p.add_argument(
        "--index-dtype",
        choices=["f16", "i8", "f32"],
        default="f16",
        help="scalar kind of the vector indexes (default f16; i8 is smaller, f32 exact)",
    )

    p = add("add", cmd_add, "add a concept with its reference images", json_out=True)
    p.add_argument("name", help="display name, unique in the memory")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PATH",
        help="reference image (repeat for several)",
    )
    p.add_argument("--category", default="object", help="person, dog, mug, ... (default object)")
    info = p.add_mutually_exclusive_group()
    info.add_argument("--info", help="free-text information about the concept")
    info.add_argument("--info-file", metavar="FILE", help="read the info from a UTF-8 file")
    p.add_argument("--alias", action="append", default=[], help="another name (repeatable)")
    p.add_argument(
        "--vectors",
        metavar="FILE.npy",
        help="float32 [n_images, dim] vectors of the images, from --encoder",
    )
    p.add_argument("--encoder", metavar="ID", help="id of the encoder that made --vectors")
    _embed_options(p)

    p = add("list", cmd_list, "list the concepts", json_out=True)
    p.add_argument("--category", help="only this category")

    p = add("show", cmd_show, "show one concept with its images", json_out=True)
    p.add_argument("concept", help="concept id or name")

    p = add(
        "update",
        cmd_update,
        "rename a concept or change its info, category, aliases or images",
        json_out=True,
    )
    p.add_argument("concept", help="concept id or name")
    p.add_argument("--name", help="new name")
    p.add_argument("--category", help="new category")
    info = p.add_mutually_exclusive_group()
    info.add_argument("--info", help="new info text")
    info.add_argument("--info-file", metavar="FILE", help="read the new info from a file")
    p.add_argument("--add-alias", action="append", default=[], metavar="ALIAS")
    p.add_argument("--remove-alias", action="append", default=[], metavar="ALIAS")
    p.add_argument("--add-image", action="append", default=[], metavar="PATH")
    p.add_argument("--remove-image", action="append", default=[], type=int, metavar="IMAGE_ID")
    _embed_options(p)

    p = add("remove", cmd_remove, "forget concepts: rows, images, vectors (then compact)")
    p.add_argument("concept", nargs="+", help="concept ids or names")

    p = add(
        "search", cmd_search, "find the concepts closest to query vectors or text", json_out=True
    )
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--vectors", metavar="FILE.npy", help="query vectors, [dim] or [n, dim]")
    query.add_argument(
        "--text",
        action="append",
        metavar="TEXT",
        help="text query, e.g. 'a red mug' (repeatable; needs --text-encoder)",
    )
    p.add_argument(
        "--text-encoder",
        metavar="MANIFEST",
        help="text tower manifest (`rap-edge export encoder`); searches the index "
        "of the image encoder it pairs with unless --encoder is given",
    )
    p.add_argument(
        "--provider",
        choices=[p.value for p in Provider],
        default="auto",
        help="execution provider for --text-encoder (default auto)",
    )
    p.add_argument("-k", type=int, default=3, help="concepts per query (default 3)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="minimum cosine similarity; below it a query is unknown",
    )
    p.add_argument("--encoder", help="encoder index to search (default: the active one)")

    p = add(
        "import-rap", cmd_import_rap, "import a RAP database.json (all or nothing)", json_out=True
    )
    p.add_argument("database", help="path of RAP's database.json")
    p.add_argument(
        "--root",
        help="folder image paths are relative to (default: the JSON's folder, then its parent)",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave concepts whose name exists alone instead of failing",
    )

    p = add("export-rap", cmd_export_rap, "write the memory as a RAP database folder")
    p.add_argument("out", help="new (or empty) folder to write")
    p.add_argument(
        "--prefix",
        help="path prefix of images in the JSON (default: the folder "
        "name, as RAP expects when run from its parent)",
    )

    p = add(
        "rebuild-index",
        cmd_rebuild_index,
        "embed pending images (with --manifest) and rebuild the vector indexes",
    )
    p.add_argument("--encoder", help="only this encoder")
    p.add_argument(
        "--manifest",
        metavar="MODEL.json",
        help="exported image encoder: embed every pending image with it first "
        "(it becomes the active encoder)",
    )
    p.add_argument(
        "--provider",
        choices=[p.value for p in Provider],
        default="auto",
        help="execution provider for --manifest (default auto)",
    )

    from rap_edge.cli._options import add_model_options

    p = add(
        "embed-faces",
        cmd_embed_faces,
        "embed the face images of person concepts with the face pipeline (detector, "
        "landmarks, aligned chip, face embedder)",
    )
    add_model_options(p, thresholds=False)

    p = add(
        "embed-objects",
        cmd_embed_objects,
        "embed the images of object and pet concepts (every category but person) with "
        "the object embedder (whole reference image)",
    )
    p.add_argument(
        "--models",
        metavar="DIR",
        default=None,
        help="folder of exported models (default: <model store>/onnx)",
    )
    p.add_argument(
        "--object-encoder",
        metavar="MANIFEST",
        default="mobilenetv2.json",
        help="object embedder manifest in --models (default mobilenetv2.json)",
    )
    p.add_argument(
        "--provider",
        choices=[p.value for p in Provider],
        default="auto",
        help="ONNX Runtime execution provider (default auto)",
    )
    p.set_defaults(object_detector=None)

    p = add(
        "enroll-unknown",
        cmd_enroll_unknown,
        "add a concept from an unknown-face cluster's best crops (clusters come from "
        "`rap-edge run`)",
    )
    p.add_argument("cluster", help="cluster id printed by `run`, e.g. u0001")
    p.add_argument("--name", required=True, help="name of the new concept")
    p.add_argument("--category", default="person", help="category (default person)")
    p.add_argument("--info", help="free-text information about the concept")
    p.add_argument(
        "--unknown-dir",
        metavar="DIR",
        default=None,
        help="cluster folder (default: <memory>/unknown, as `run` writes it)",
    )
    add_model_options(p, thresholds=False)

    add(
        "verify",
        cmd_verify,
        "check database, files, vectors and indexes (exit 2 on damage)",
        json_out=True,
    )
    add("vacuum", cmd_vacuum, "compact: drop orphan files, VACUUM, truncate WAL, rebuild indexes")


def _embed_options(p: argparse.ArgumentParser) -> None:
    """--models, --provider, --face N / --largest, --whole-image, --no-embed (`add`, `update`)."""
    p.add_argument(
        "--models",
        metavar="DIR",
        default=None,
        help="folder of exported models for embedding a person's photos, or cutting an "
        "object's photos to the detected object, now (default: <model store>/onnx; without "
        "the models the photos wait for `memory embed-faces` / `embed-objects`)",
    )
    p.add_argument(
        "--provider",
        choices=[v.value for v in Provider],
        default=None,
        help="ONNX Runtime provider for embedding now (default auto)",
    )
    pick = p.add_mutually_exclusive_group()
    pick.add_argument(
        "--face",
        type=int,
        metavar="N",
        help="a photo with several faces: enrol the N-th face from the left (1 = leftmost); "
        "the stored image is a crop around it",
    )
    pick.add_argument(
        "--largest",
        action="store_true",
        help="a photo with several faces: enrol the largest (stored as a crop around it)",
    )
    p.add_argument(
        "--whole-image",
        action="store_true",
        help="an object's or pet's photo: keep the whole photo instead of the crop of the "
        "largest detected object of its category (e.g. the dog for --category dog); a photo "
        "where the detector finds no such object is refused without it",
    )
    p.add_argument(
        "--no-embed",
        action="store_true",
        help="store the photos as given without embedding them now (no face check, no "
        "object crop)",
    )
