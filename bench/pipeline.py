#!/usr/bin/env python3
"""End-to-end face pipeline speed: frames per second and per-stage p50/p99 on this machine.

The stream: 640x480 frames made from the real check photos (face_recognition's test images),
one to three photos side by side per frame, each segment a few seconds long, with a few pixels
of jitter per frame so tracks move. Obama is enrolled from ``obama.jpg``; the rest of the
memory is filled with synthetic face concepts (real descriptors of the check photos plus noise,
cosine ~0.8 to them: plausible strangers for the index, not real people) up to 10 or 10,000
concepts. Runs, side by side in one process: track reuse on (embed every 10 frames) and off
(every frame embedded), for each memory size. Prints a markdown table and writes
``bench/results/pipeline.json``.

Example:
    python bench/pipeline.py --frames 90 --sizes 10 10000
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from rap_edge.eval import latency_summary
from rap_edge.memory import Memory, NewConcept
from rap_edge.models import CHECK_PHOTOS, ModelStore, default_store_dir
from rap_edge.pipeline import (
    FaceEmbedder,
    FaceModels,
    ObjectModels,
    Pipeline,
    PipelineConfig,
    embed_faces_in_memory,
    face_vectors,
)

STAGES = ("detect", "landmarks", "align", "embed", "search", "total")


def _png(i: int) -> bytes:
    img = np.full((16, 16, 3), i % 251, dtype=np.uint8)  # the memory refuses smaller
    img[0, :3] = [(i >> 16) & 255, (i >> 8) & 255, i & 255]
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        msg = "PNG encoding failed"
        raise RuntimeError(msg)
    return buf.tobytes()


def compose(images: list[np.ndarray], shift: int) -> np.ndarray:
    """A 640x480 frame with the images scaled into equal columns, moved by ``shift`` px."""
    canvas = np.full((480, 640, 3), 90, np.uint8)
    col = 640 // len(images)
    for i, img in enumerate(images):
        s = min((col - 20) / img.shape[1], 440 / img.shape[0])
        small = cv2.resize(
            img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA
        )
        x, y = i * col + 10 + shift, 20 + shift // 2
        h, w = small.shape[:2]
        canvas[y : y + h, x : x + min(w, 640 - x)] = small[:, : 640 - x]
    return canvas


def stream(photos: dict[str, np.ndarray], frames: int) -> list[np.ndarray]:
    """``frames`` frames: a third with 1 face, a third with 2, a third with 3."""
    groups = [
        [photos["obama2"]],
        [photos["obama3"], photos["biden"]],
        [photos["obama2"], photos["biden"], photos["obama3"]],
    ]
    return [compose(groups[min(2, 3 * i // frames)], (i % 6) - 3 + 3) for i in range(frames)]


def fill_memory(  # noqa: PLR0913
    mem: Memory,
    models: FaceModels,
    enrolled: Path,
    size: int,
    *,
    seeds: np.ndarray,
    rng: np.random.Generator,
) -> None:
    mem.add("Barack", images=[enrolled], category="person")
    embed_faces_in_memory(mem, FaceEmbedder(models))
    enc = models.encoder_id
    for lo in range(1, size, 1000):
        n = min(size, lo + 1000) - lo
        base = seeds[rng.integers(0, len(seeds), n)]
        noise = rng.standard_normal(base.shape).astype(np.float32)
        noise *= (
            0.75
            * np.linalg.norm(base, axis=1, keepdims=True)
            / np.linalg.norm(noise, axis=1, keepdims=True)
        )
        vecs = (base + noise).astype(np.float32)
        mem.add_many(
            [
                NewConcept(
                    f"stranger{lo + j}",
                    images=[_png(lo + j)],
                    category="person",
                    vectors=vecs[j : j + 1],
                    encoder=enc,
                )
                for j in range(n)
            ]
        )


def check_photos() -> tuple[dict[str, Path], dict[str, np.ndarray]]:
    """The check photos (pulled if absent): paths and BGR images by stem."""
    store = ModelStore(None, carriers=[CHECK_PHOTOS])
    store.pull()
    paths = {
        f.name[:-4]: store.file(CHECK_PHOTOS.key, f.name)
        for f in CHECK_PHOTOS.files
        if f.name.endswith(".jpg")
    }
    photos = {}
    for k, p in paths.items():
        img = cv2.imread(str(p))
        if img is None:
            msg = f"{p}: cannot read the check photo"
            raise SystemExit(msg)
        photos[k] = np.asarray(img, np.uint8)
    return paths, photos


def run_case(  # noqa: PLR0913
    models: FaceModels,
    mem: Memory,
    frames: list[np.ndarray],
    *,
    reuse: bool,
    warmup: int,
    tiles: int,
    objects: ObjectModels | None = None,
) -> dict[str, object]:
    pipe = Pipeline(
        models,
        mem,
        config=PipelineConfig(embed_every=10 if reuse else 1, tiles=tiles),
        objects=objects,
    )
    for f in frames[:warmup]:
        pipe.process(f)
    pipe.reset()
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    faces = known = embedded = 0
    start = time.perf_counter()
    for f in frames:
        res = pipe.process(f)
        for s in STAGES:
            stages[s].append(res.timings_ms.get(s, 0.0))
        faces += len(res.recognitions)
        known += sum(r.decision == "known" for r in res.recognitions)
        embedded += sum(r.embedded for r in res.recognitions)
    wall = time.perf_counter() - start
    return {
        "fps": len(frames) / wall,
        "frames": len(frames),
        "faces": faces,
        "known": known,
        "embedded": embedded,
        "stages_ms": {s: latency_summary(list(np.asarray(v) / 1000.0)) for s, v in stages.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=90, help="frames per case (default 90)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10, 10_000],
        help="concepts in memory (default 10 10000)",
    )
    parser.add_argument("--models", default=None, help="exported models (default <store>/onnx)")
    parser.add_argument("--face-encoder", default="dlib_resnet.json")
    parser.add_argument("--provider", default="cpu")
    parser.add_argument(
        "--tiles",
        type=int,
        nargs="+",
        default=[1, 2],
        help="tile grids to run (default 1 2; 1 = whole frame only)",
    )
    parser.add_argument(
        "--objects-check",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="instead: the face path with and without the object models loaded (a memory "
        "with no object concepts), alternating for ROUNDS rounds (issue 17: within 5 %%)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="default bench/results/pipeline.json (pipeline_objects.json with --objects-check)",
    )
    args = parser.parse_args()
    if args.objects_check:
        args.out = args.out or "bench/results/pipeline_objects.json"
        return objects_check(args)
    args.out = args.out or "bench/results/pipeline.json"
    paths, photos = check_photos()
    models = FaceModels.load(
        args.models or default_store_dir() / "onnx",
        encoder=args.face_encoder,
        provider=args.provider,
    )
    seeds, _ = face_vectors(models, list(paths.values()))
    frames = stream(photos, args.frames)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rap-bench-") as tmp:
        for size in args.sizes:
            with Memory.init(Path(tmp) / f"m{size}") as mem:
                fill_memory(mem, models, paths["obama"], size, seeds=seeds, rng=rng)
                for tiles in args.tiles:
                    for reuse in (True, False):
                        r = run_case(models, mem, frames, reuse=reuse, warmup=5, tiles=tiles)
                        r.update(concepts=size, reuse=reuse, tiles=tiles)
                        rows.append(r)
                        print(
                            f"done: {size} concepts, tiles {tiles}, reuse {reuse}: "
                            f"{r['fps']:.1f} FPS",
                            flush=True,
                        )
    print(
        f"\n{args.frames} frames of 640x480 (1-3 faces), {models.encoder_id} on "
        f"{models.encoder.provider}, {platform.processor() or platform.machine()}\n"
    )
    print(
        "| concepts | tiles | track reuse | FPS | total p50 / p99 ms | detect p50 | "
        "landmarks p50 | "
        "embed p50 | search p50 | faces embedded |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        st: dict = r["stages_ms"]  # type: ignore[assignment]

        def p(stage: str, q: str, st: dict = st) -> str:
            return f"{st[stage][q + '_ms']:.1f}"

        print(
            f"| {r['concepts']} | {r['tiles']} | {'on (every 10)' if r['reuse'] else 'off'} | "
            f"{r['fps']:.1f} | {p('total', 'p50')} / {p('total', 'p99')} | "
            f"{p('detect', 'p50')} | {p('landmarks', 'p50')} | {p('embed', 'p50')} | "
            f"{p('search', 'p50')} | {r['embedded']}/{r['faces']} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "frames": args.frames,
                "encoder": models.encoder_id,
                "provider": models.encoder.provider,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


def objects_check(args: argparse.Namespace) -> int:
    """Face-path FPS with the object models loaded but no object concept, against none."""
    import statistics

    paths, photos = check_photos()
    folder = Path(args.models) if args.models else default_store_dir() / "onnx"
    models = FaceModels.load(folder, encoder=args.face_encoder, provider=args.provider)
    objects = ObjectModels.load(folder, provider=args.provider)
    frames = stream(photos, args.frames)
    fps: dict[str, list[float]] = {"faces only": [], "object models loaded": []}
    with (
        tempfile.TemporaryDirectory(prefix="rap-bench-") as tmp,
        Memory.init(Path(tmp) / "m") as mem,
    ):
        seeds, _ = face_vectors(models, list(paths.values()))
        fill_memory(mem, models, paths["obama"], 10, seeds=seeds, rng=np.random.default_rng(0))
        for _ in range(args.objects_check):
            for label, obj in (("faces only", None), ("object models loaded", objects)):
                r = run_case(models, mem, frames, reuse=True, warmup=5, tiles=1, objects=obj)
                fps[label].append(float(r["fps"]))  # type: ignore[arg-type]
    med = {k: statistics.median(v) for k, v in fps.items()}
    ratio = med["object models loaded"] / med["faces only"]
    detector = objects.detector.manifest.name if objects.detector is not None else "windows"
    print(
        f"face path, {args.frames} frames, track reuse on, 10 concepts, no object concept: "
        f"faces only {med['faces only']:.1f} FPS, with the object models ({detector}) loaded "
        f"{med['object models loaded']:.1f} FPS; ratio {ratio:.3f} "
        f"(medians of {args.objects_check} alternating rounds)"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"machine": platform.platform(), "fps": fps, "median": med, "ratio": ratio},
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
