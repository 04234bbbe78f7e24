"""``rap-edge demo``: the memory, recognition and descriptions end to end.

Steps 1-6 need no downloaded model, so they hand the memory small hand-made vectors in place of
an encoder's output, and say so. Everything else is the real code path: a RAP database import,
live edits, thresholded search, forgetting with compaction, verify, export. Steps 7-8 run when
`make models` has exported the real models (`make demo` does that first): real faces on real
photos, then a short camera-like sequence with personalised descriptions written by the LLM
(SmolLM2-135M INT4 through ONNX Runtime GenAI, or the template without it) on a worker thread.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    import numpy as np
    import numpy.typing as npt

    from rap_edge.app import Session
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
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    img = np.full((96, 96, 3), 235, dtype=np.uint8)
    cv2.circle(img, (48, 52), 30, color, thickness=-1)
    noise = rng.integers(0, 12, size=img.shape, dtype=np.uint8)
    return np.asarray(cv2.add(img, noise), dtype=np.uint8)


def _write_rap_folder(root: Path) -> Path:
    import json

    import cv2

    folder = root / "example_database"
    folder.mkdir(parents=True)
    concept_dict, path_to_concept = {}, {}
    for seed, (token, (name, category, info, color)) in enumerate(_EXAMPLE.items()):
        rel = f"example_database/{name}.png"
        cv2.imwrite(str(root / rel), _draw(color, seed))
        concept_dict[token] = {"name": name, "image": rel, "info": info, "category": category}
        path_to_concept[rel] = token
    db = folder / "database.json"
    db.write_text(
        json.dumps({"concept_dict": concept_dict, "path_to_concept": path_to_concept}, indent=2)
    )
    return db


def _search(memory: Memory, label: str, vector: tuple[float, ...], threshold: float) -> None:
    hits = memory.search([vector], k=2, threshold=threshold)[0]
    found = ", ".join(f"{h.name} ({h.score:.3f})" for h in hits) or "unknown"
    print(f"  query {label:<28} -> {found}")


def run_demo(workdir: Path) -> int:
    """Run the demo in ``workdir`` (created if needed); return the exit code."""
    from rap_edge.memory import Memory, export_rap, import_rap

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
    from rap_edge.app import Session, Settings
    from rap_edge.errors import ModelStoreError
    from rap_edge.models import CHECK_PHOTOS, ModelStore

    print("\n7. real faces (ResNet-10 SSD, dlib 5-point landmarks, dlib descriptor, on CPU):")
    try:
        # One decoder thread for step 8: on a small CPU the other core stays with the frames.
        settings = Settings(provider="cpu", llm_threads=1, max_tokens=48)
        session = Session.open(settings, memory=memory, embed=False, isolate=True)
    except ModelStoreError as err:
        print(f"  skipped: {err}")
        return True
    photos = ModelStore(None, carriers=[CHECK_PHOTOS])
    if photos.damaged(CHECK_PHOTOS.key):
        print("  skipped: the check photos are not pulled (run `make models`)")
        return True
    photo = {f.name: photos.file(CHECK_PHOTOS.key, f.name) for f in CHECK_PHOTOS.files}
    with session:
        faces_ok = _recognise_photos(session, photo)
    return _real_objects(memory, photo) and faces_ok


def _real_objects(memory: Memory, photo: dict[str, Path]) -> bool:
    """Step 9: a pet and a thing next to the faces (NanoDet + MobileNetV2), when exported."""
    import cv2
    import numpy as np

    from rap_edge.app import Session, Settings
    from rap_edge.errors import ModelStoreError
    from rap_edge.models import ModelStore
    from rap_edge.models._carriers import OBJECT_PHOTOS

    print("\n9. a pet and a thing next to the faces (NanoDet COCO detector, MobileNetV2):")
    objects = ModelStore(None, carriers=[OBJECT_PHOTOS])
    if objects.damaged(OBJECT_PHOTOS.key):
        print("  skipped: the object photos are not pulled (run `make models`)")
        return True
    try:
        session = Session.open(
            Settings(provider="cpu", objects=True), memory=memory, embed=False, isolate=True
        )
    except ModelStoreError as err:
        print(f"  skipped: {err}")
        return True
    obj = {
        f.name: np.asarray(cv2.imread(str(objects.file(OBJECT_PHOTOS.key, f.name))), np.uint8)
        for f in OBJECT_PHOTOS.files
        if f.name.endswith((".png", ".jpg"))
    }
    face = {k: np.asarray(cv2.imread(str(p)), np.uint8) for k, p in photo.items() if ".jpg" in k}
    both = {**obj, **face}
    with session:
        if session.objects is None or session.objects.detector is None:
            print("  skipped: no object detector exported (`make models` needs npm and node)")
            return True
        session.add_concept(
            "Chelsea", "cat", images=[obj["chelsea.png"]], info="Chelsea is the family's cat."
        )
        session.add_concept("Ana's motorbike", "motorbike", images=[obj["motorcycle_left.png"]])
        print(
            "  enrolled Chelsea from chelsea.png and Ana's motorbike from motorcycle_left.png "
            "(each stored as the crop of the detected cat / motorcycle)"
        )
        scenes = [
            ("Barack and Chelsea (her enrollment photo, scaled)", ["obama2.jpg", "chelsea.png"]),
            ("the motorbike, photographed from the other side", ["motorcycle_right.png"]),
            ("Joe and a coffee cup (no cup is enrolled)", ["biden.jpg", "coffee.png"]),
        ]
        want = [{"Barack", "Chelsea"}, {"Ana's motorbike"}, {"Joe"}]
        ok = True
        for (label, names), expected in zip(scenes, want, strict=True):
            res = session.recognise(_tile(*(both[n] for n in names)))
            said = [
                f"{r.name if r.decision == 'known' else r.decision} ({r.kind}, {r.score or 0:.2f})"
                for r in res.recognitions
            ]
            print(f"  {label:<50} -> {', '.join(said) or 'nothing'}")
            ok &= {r.name for r in res.recognitions if r.decision == "known"} == expected
    return ok


def _recognise_photos(session: Session, photo: dict[str, Path]) -> bool:
    import cv2
    import numpy as np

    session.add_concept(
        "Barack", "person", files=[photo["obama.jpg"]], info="enrolled from one photo"
    )
    pipe = session.pipeline(track=False)
    enc = session.models.encoder_id
    print(
        f"  enrolled Barack from obama.jpg; threshold {pipe.face_threshold:.4f} "
        f"({session.thresholds.source(enc)})"
    )
    expected = {"obama2.jpg": "Barack", "obama3.jpg": "Barack", "biden.jpg": None}
    ok = True
    for name, want in expected.items():
        res = pipe.process(np.asarray(cv2.imread(str(photo[name])), dtype=np.uint8))
        for r in res.recognitions:
            said = r.name if r.decision == "known" else r.decision
            print(
                f"  {name:<11} -> {said:<8} score {r.score or 0:.3f}  "
                f"({res.timings_ms['total']:.0f} ms)"
            )
        got = {r.name for r in res.recognitions if r.decision == "known"}
        ok &= got == ({want} if want else set())
    print("  (Biden was never enrolled: unknown, not a forced match.)")
    return _describe_sequence(session, photo) and ok


def _tile(*images: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Photos side by side on a 640x480 frame (a stand-in for a camera view)."""
    import cv2
    import numpy as np

    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    w = 640 // len(images)
    for i, img in enumerate(images):
        s = min(w / img.shape[1], 480 / img.shape[0])
        small = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)))
        y, x = (480 - small.shape[0]) // 2, i * w + (w - small.shape[1]) // 2
        frame[y : y + small.shape[0], x : x + small.shape[1]] = small
    return frame


def _describe_sequence(session: Session, photo: dict[str, Path]) -> bool:
    """Step 8: a short camera-like sequence with personalised descriptions off the frame path."""
    import threading
    import time

    import cv2
    import numpy as np

    # The backend runs in a child process (ORT GenAI holds the GIL while it reads a prompt).
    session.backend()
    print(f"\n8. a short sequence at 10 FPS with descriptions ({session.backend_note}):")
    session.update_concept(
        "Barack", info="Barack is the owner's neighbour; he plays basketball on Sundays."
    )
    img = {
        k: np.asarray(cv2.imread(str(p)), dtype=np.uint8)
        for k, p in photo.items()
        if k.endswith(".jpg")
    }
    segments = [
        ("Barack alone", _tile(img["obama2.jpg"])),
        ("a stranger", _tile(img["biden.jpg"])),
        ("Barack and the stranger", _tile(img["obama3.jpg"], img["biden.jpg"])),
        ("after enrolling Joe", _tile(img["obama3.jpg"], img["biden.jpg"])),
    ]
    lock = threading.Lock()
    described: list[int] = []

    def done(frame: int | None, r: object) -> None:
        from rap_edge.generate import GenerationResult

        assert isinstance(r, GenerationResult)  # noqa: S101 - for the type checker
        tags = "; regenerated" if r.regenerated else ""
        tags += f"; template fallback (rejected {', '.join(r.rejected)})" if r.fell_back else ""
        with lock:
            described.append(frame or 0)
            print(
                f"     >> frame {frame} [{r.backend}, first token "
                f"{r.first_token_ms or 0:.0f} ms, {r.total_ms:.0f} ms{tags}]: {r.text}",
                flush=True,
            )

    describer = session.describer(done)
    pipe = session.pipeline(track=True)
    index = 0
    try:
        for label, frame in segments:
            if label == "after enrolling Joe":
                session.add_concept(
                    "Joe",
                    "person",
                    files=[photo["biden.jpg"]],
                    info="Joe is the owner's uncle; he likes ice cream.",
                )
                pipe.forget_decisions()  # decide afresh against the edited memory
                with lock:
                    print("   (live edit: Joe added to the memory; no restart)")
            for _ in range(8):
                start = time.perf_counter()
                res = pipe.process(frame, index=index, timestamp=time.time())
                said = (
                    ", ".join(
                        (r.name or "?") if r.decision == "known" else r.decision
                        for r in res.recognitions
                    )
                    or "nobody"
                )
                asked = describer.offer(res) is not None
                with lock:
                    print(
                        f"  frame {index:>2} {label:<24} {said:<18} "
                        f"{res.timings_ms['total']:5.0f} ms"
                        f"{'  -> description requested' if asked else ''}",
                        flush=True,
                    )
                index += 1
                time.sleep(max(0.0, 0.1 - (time.perf_counter() - start)))
    finally:
        describer.close(120)
    w = describer.worker
    stats = describer.generator.stats
    print(
        f"  descriptions: {w.done} written, {w.replaced} replaced by newer requests while "
        f"queued; regenerated {stats['regenerated']}, template fallback "
        f"{stats['fell_back']}. The frame loop never waited for them."
    )
    return bool(described)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.workdir:
        workdir = Path(args.workdir).expanduser().resolve()
        if workdir.exists() and any(workdir.iterdir()):
            from rap_edge.errors import InvalidInputError

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
        help="run the demo: memory, real faces, personalised descriptions",
        description=(
            "Import a small RAP database drawn by the demo, search it with hand-made vectors, "
            "edit and forget concepts live, verify and export; then, when `make models` has "
            "exported them, recognise real faces with the real models and describe a short "
            "sequence in words (with $RAP_EDGE_BACKEND, default auto: the LLM when built, "
            "else the template). It downloads nothing."
        ),
    )
    p.add_argument(
        "--workdir",
        help="keep the demo's files in this new folder "
        "(default: a temporary folder, deleted afterwards)",
    )
    p.set_defaults(func=cmd_demo)
