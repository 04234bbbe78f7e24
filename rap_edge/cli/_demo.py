"""``rap-edge demo``: the memory end to end on an embedded example, in a few seconds.

The demo needs no downloaded model, so it hands the memory small hand-made vectors in place of
an encoder's output, and says so (real encoders: `make models`, then
`rap-edge memory rebuild-index --manifest`). Everything else is the real code path: a RAP
database import, live edits, thresholded search, forgetting with compaction, verify, export.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    import numpy as np
    import numpy.typing as npt

    from rap_edge.memory import Memory

# Three concepts drawn by the demo itself (no third-party pictures are shipped).
_EXAMPLE = {
    "<mug>": ("mug", "object", "<mug> is Ana's red coffee mug, chipped handle.", (40, 40, 200)),
    "<rex>": ("rex", "dog", "<rex> is a sandy terrier who steals socks.", (80, 170, 220)),
    "<fern>": ("fern", "plant", "<fern> is the fern on the kitchen window sill.", (60, 160, 60)),
}
_DEMO_ENCODER = "demo/handmade-4d"
# Hand-made 4-d directions standing in for an image encoder's output (one per concept).
_VECTORS = {"mug": (1.0, 0.1, 0.0, 0.0), "rex": (0.0, 1.0, 0.2, 0.0), "fern": (0.0, 0.0, 1.0, 0.3)}


def _draw(color: tuple[int, int, int], seed: int) -> npt.NDArray[np.uint8]:
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    img = np.full((96, 96, 3), 235, dtype=np.uint8)
    cv2.circle(img, (48, 52), 30, color, thickness=-1)
    noise = rng.integers(0, 12, size=img.shape, dtype=np.uint8)
    return np.asarray(cv2.add(img, noise), dtype=np.uint8)


def _write_rap_folder(root: Path) -> Path:
    import json  # noqa: PLC0415

    import cv2  # noqa: PLC0415

    folder = root / "example_database"
    folder.mkdir(parents=True)
    concept_dict, path_to_concept = {}, {}
    for seed, (token, (name, category, info, color)) in enumerate(_EXAMPLE.items()):
        rel = f"example_database/{name}.png"
        cv2.imwrite(str(root / rel), _draw(color, seed))
        concept_dict[token] = {"name": name, "image": rel, "info": info, "category": category}
        path_to_concept[rel] = token
    db = folder / "database.json"
    db.write_text(json.dumps({"concept_dict": concept_dict, "path_to_concept": path_to_concept},
                             indent=2))
    return db


def _search(memory: Memory, label: str, vector: tuple[float, ...], threshold: float) -> None:
    hits = memory.search([vector], k=2, threshold=threshold)[0]
    found = ", ".join(f"{h.name} ({h.score:.3f})" for h in hits) or "unknown"
    print(f"  query {label:<28} -> {found}")


def run_demo(workdir: Path) -> int:
    """Run the demo in ``workdir`` (created if needed); return the exit code."""
    from rap_edge.memory import Memory, export_rap, import_rap  # noqa: PLC0415

    print(f"rap-edge memory demo in {workdir}\n")
    db = _write_rap_folder(workdir / "rap")
    with Memory.init(workdir / "memory") as memory:
        print(f"1. import a RAP database ({db.relative_to(workdir)})")
        for c in import_rap(memory, db):
            print(f"  {c.name:<5} [{c.category}] aliases={list(c.aliases)} info={c.info!r}")
        print(f"  {len(memory.pending())} image(s) pending: no encoder has embedded them yet\n")

        print("2. attach vectors from the caller (hand-made 4-d demo vectors, NOT an image model)")
        ids = [img.id for c in memory.list_concepts() for img in c.images]
        names = [c.name for c in memory.list_concepts() for _ in c.images]
        memory.set_vectors(ids, [_VECTORS[n] for n in names], encoder=_DEMO_ENCODER)
        print(f"  active encoder: {memory.active_encoder}; pending now {len(memory.pending())}\n")

        threshold = 0.8
        print(f"3. search with a threshold of {threshold} (below it: unknown)")
        _search(memory, "near mug", (0.9, 0.2, 0.05, 0.0), threshold)
        _search(memory, "between rex and fern", (0.0, 0.7, 0.7, 0.1), threshold)
        _search(memory, "unlike anything", (0.0, 0.0, 0.0, 1.0), threshold)

        print("\n4. live edits, seen by the very next search")
        memory.update("rex", name="Rex", info="<rex> is a sandy terrier; he is 7 years old.")
        _search(memory, "near rex", (0.05, 1.0, 0.1, 0.0), threshold)
        memory.remove("mug")
        print("  removed mug (rows, image file, vectors; index compacted)")
        _search(memory, "near mug", (0.9, 0.2, 0.05, 0.0), threshold)

        report = memory.verify()
        print(f"\n5. verify: {'ok' if report.ok else 'FAILED'} {report.counts}")
        result = export_rap(memory, workdir / "exported_database")
        print(f"6. export for RAP: {result.database} ({result.concepts} concepts)")
        faces_ok = _real_faces(memory)
    return 0 if report.ok and faces_ok else 2


def _real_faces(memory: Memory) -> bool:
    """Step 7: the real face models on real photos, when `make models` has exported them."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from rap_edge.errors import ModelStoreError  # noqa: PLC0415
    from rap_edge.models import CHECK_PHOTOS, ModelStore, default_store_dir  # noqa: PLC0415
    from rap_edge.pipeline import (  # noqa: PLC0415
        FaceEmbedder,
        FaceModels,
        Pipeline,
        PipelineConfig,
        embed_faces_in_memory,
    )

    print("\n7. real faces (ResNet-10 SSD, dlib 5-point landmarks, dlib descriptor, on CPU):")
    try:
        models = FaceModels.load(default_store_dir() / "onnx", provider="cpu")
    except ModelStoreError as err:
        print(f"  skipped: {err}")
        return True
    photos = ModelStore(None, carriers=[CHECK_PHOTOS])
    if photos.damaged(CHECK_PHOTOS.key):
        print("  skipped: the check photos are not pulled (run `make models`)")
        return True
    photo = {f.name: photos.file(CHECK_PHOTOS.key, f.name) for f in CHECK_PHOTOS.files}
    memory.add("Barack", images=[photo["obama.jpg"]], category="person",
               info="enrolled from one photo")
    embed_faces_in_memory(memory, FaceEmbedder(models))
    pipe = Pipeline(models, memory, config=PipelineConfig(track=False))
    print(f"  enrolled Barack from obama.jpg; threshold {pipe.face_threshold:.4f} (manifest)")
    expected = {"obama2.jpg": "Barack", "obama3.jpg": "Barack", "biden.jpg": None}
    ok = True
    for name, want in expected.items():
        res = pipe.process(np.asarray(cv2.imread(str(photo[name])), dtype=np.uint8))
        for r in res.recognitions:
            said = r.name if r.decision == "known" else r.decision
            print(f"  {name:<11} -> {said:<8} score {r.score or 0:.3f}  "
                  f"({res.timings_ms['total']:.0f} ms)")
        got = {r.name for r in res.recognitions if r.decision == "known"}
        ok &= got == ({want} if want else set())
    print("  (Biden was never enrolled: unknown, not a forced match.)")
    return ok


def cmd_demo(args: argparse.Namespace) -> int:
    if args.workdir:
        workdir = Path(args.workdir).expanduser().resolve()
        if workdir.exists() and any(workdir.iterdir()):
            from rap_edge.errors import InvalidInputError  # noqa: PLC0415

            msg = f"{workdir} is not empty; give a new folder"
            raise InvalidInputError(msg)
        code = run_demo(workdir)
        print(f"\nTry the CLI on it: rap-edge memory list --memory {workdir / 'memory'}")
        return code
    with tempfile.TemporaryDirectory(prefix="rap-edge-demo-") as tmp:
        return run_demo(Path(tmp))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo``."""
    p = sub.add_parser(
        "demo",
        help="run the memory demo on an embedded example",
        description=(
            "Import a small RAP database drawn by the demo, search it with hand-made vectors, "
            "edit and forget concepts live, verify and export; then, when `make models` has "
            "exported them, recognise real faces with the real models (it downloads nothing)."
        ),
    )
    p.add_argument("--workdir", help="keep the demo's files in this new folder "
                   "(default: a temporary folder, deleted afterwards)")
    p.set_defaults(func=cmd_demo)
