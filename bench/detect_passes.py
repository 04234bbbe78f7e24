#!/usr/bin/env python3
"""What each face-detector pass costs, and how often a stream or a photo set runs it.

Passes (``FaceModels.detect``): the whole-frame first pass; the second passes, run only when
the first finds no face inside the frame (padded + two rotated views in one batched call, each
candidate verified on its own chip, then tiles cut at full resolution, then, if those find
nothing either, a grid one tile finer); the tiled first pass
(auto tiles: independent photos over 960 px, stream frames while a small face's track is
missing). Each is timed on real frames made from the check photos, all kinds interleaved
round by round so the machine's load falls on all alike; medians and p90 in milliseconds.

Then, how often: the default pipeline on a 640x480 stream where a third of the frames hold no
face (the second passes run on every 3rd such frame), against the same stream with
``fallback_every`` 0, side by side, alternating; and with ``--labelled DIR`` the share of
photos of each condition that ran the second passes or a tiled first pass.

With ``--face-free DIR``, photos that hold no face (e.g. scikit-image's sample pictures without
``astronaut.png`` and ``camera.png``): the faces found anyway, by the earlier passes and by the
finer tiles apart.

Example:
    python bench/detect_passes.py --rounds 15 --labelled /tmp/labelled --face-free DIR
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rap_edge.app import Session, Settings
from rap_edge.pipeline import FaceModels, LabelledSet, Pipeline, PipelineConfig
from rap_edge.pipeline._faces import auto_tiles, largest
from rap_edge.pipeline._quality import denoise, noise_ratio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.pipeline
from bench.pipeline import check_photos, compose


def _frame(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``photo`` letterboxed into a ``size`` (w, h) grey frame."""
    w, h = size
    s = min(w / photo.shape[1], h / photo.shape[0]) * 0.8
    small = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    out = np.full((h, w, 3), 90, np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def _ms(fn: Any) -> float:  # noqa: ANN401 - a callable
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0


def pass_timings(
    models: FaceModels, photos: dict[str, np.ndarray], rounds: int
) -> list[dict[str, Any]]:
    face = photos["obama2"]
    empty = np.full((480, 640, 3), 90, np.uint8)
    cases: dict[str, Any] = {}
    for w, h in ((640, 480), (1280, 720), (1920, 1080)):
        f = _frame(face, (w, h))
        n = auto_tiles(h, w)
        cases[f"first pass, {w}x{h}"] = lambda f=f: models.detect(f)
        cases[f"tiled first pass ({n}x{n} tiles), {w}x{h}"] = lambda f=f: models.detect(
            f, tiled=True
        )
    cases["second passes (padded + 2 rotated views), 640x480"] = lambda: models._second_pass(  # noqa: SLF001
        empty, max_side=1280, min_px=8
    )
    found = largest(models.detect(_frame(face, (640, 480))))
    if found is None:
        msg = "no face found in the check photo"
        raise RuntimeError(msg)
    vf = _frame(face, (640, 480))
    cases["verify one candidate (its chip detected again)"] = lambda: models.verify(vf, [found])
    dense = auto_tiles(480, 640) + 1
    cases[f"finer tiles ({dense}x{dense}), last second pass, 640x480"] = lambda: (
        models.detect_upright(empty, max_side=1280, tiles=dense)
    )
    cases["all second passes on a face-less 640x480 frame"] = lambda: models.detect(
        empty, fallback=True
    )
    # The pipeline's denoise (config.denoise) on a dark, grainy frame (the labelled set's dim
    # condition: 25 % brightness, noise sigma 8), and the noise check every frame pays.
    rng = np.random.default_rng(0)
    dim = np.clip(np.rint(vf * 0.25 + rng.normal(0, 8, vf.shape)), 0, 255).astype(np.uint8)
    cases["noise check (every frame), 640x480"] = lambda: noise_ratio(vf)
    cases["denoise a dark grainy 640x480 frame (only those)"] = lambda: denoise(dim)
    for fn in cases.values():  # warm up
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            times[k].append(_ms(fn))
    return [
        {
            "pass": k,
            "p50_ms": statistics.median(v),
            "p90_ms": float(np.percentile(v, 90)),
            "rounds": len(v),
        }
        for k, v in times.items()
    ]


def stream_cost(
    models: FaceModels, photos: dict[str, np.ndarray], frames: int, rounds: int
) -> dict[str, Any]:
    """FPS of a stream with face-less thirds, defaults vs no second passes, alternating."""
    groups = [[photos["obama2"]], [], [photos["obama3"], photos["biden"]]]
    seq = []
    for i in range(frames):
        g = groups[min(2, 3 * i // frames)]
        seq.append(compose(g, (i % 6)) if g else np.full((480, 640, 3), 90 + i % 3, np.uint8))
    fps: dict[str, list[float]] = {"defaults": [], "fallback_every 0": []}
    runs = {"defaults": 0, "fallback_every 0": 0}
    dense = {"defaults": 0, "fallback_every 0": 0}
    for _ in range(rounds):
        for label, every in (("defaults", 3), ("fallback_every 0", 0)):
            pipe = Pipeline(models, None, config=PipelineConfig(fallback_every=every))
            before, dense_before = models.fallback_runs, models.dense_runs
            t = time.perf_counter()
            for f in seq:
                pipe.process(f)
            fps[label].append(len(seq) / (time.perf_counter() - t))
            runs[label] = models.fallback_runs - before
            dense[label] = models.dense_runs - dense_before
    med = {k: statistics.median(v) for k, v in fps.items()}
    return {
        "frames": frames,
        "faceless_frames": sum(1 for i in range(frames) if min(2, 3 * i // frames) == 1),
        "fps_median": med,
        "fps_runs": fps,
        "second_pass_runs_per_stream": runs,
        "finer_tile_runs_per_stream": dense,
        "ratio": med["defaults"] / med["fallback_every 0"],
    }


def labelled_rates(models: FaceModels, root: str) -> dict[str, dict[str, float]]:
    """Per condition: share of photos that ran the second passes / a tiled first pass."""
    full = LabelledSet.load(root)
    sets = {"clean": full, **full.conditions()}
    out = {}
    for name, part in sets.items():
        photos = [p for v in part.identities.values() for p in v] + part.distractors
        pipe = Pipeline(models, None)
        before, dense_before = models.fallback_runs, models.dense_runs
        tiled = 0
        for p in photos:
            raw = cv2.imread(str(p))
            if raw is None:
                continue
            img = np.asarray(raw, np.uint8)
            tiled += pipe._tiled(img, alone=True)  # noqa: SLF001 - what process() decides
            pipe.process(img, independent=True)
        out[name] = {
            "photos": len(photos),
            "second_passes": (models.fallback_runs - before) / max(1, len(photos)),
            "finer_tiles": (models.dense_runs - dense_before) / max(1, len(photos)),
            "tiled_first_pass": tiled / max(1, len(photos)),
        }
        print(f"done: {name}", file=sys.stderr, flush=True)
    return out


def face_free(models: FaceModels, root: str) -> dict[str, Any]:
    """Faces found on photos that hold none, at native size and 640x480, as a photo is detected.

    Counts the boxes from the passes before the finer tiles and from the finer tiles apart.
    """
    from rap_edge.sources import list_images

    paths = list_images(Path(root))
    earlier = finer = runs = views = 0
    for path in paths:
        raw = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if raw is None:
            continue
        for view in (raw, cv2.resize(raw, (640, 480), interpolation=cv2.INTER_AREA)):
            before = models.dense_runs
            found = models.detect(np.asarray(view, np.uint8), fallback=True)
            views += 1
            if models.dense_runs > before:
                runs += 1
                finer += len(found)
            else:
                earlier += len(found)
    return {
        "photos": len(paths),
        "views": views,
        "faces_from_earlier_passes": earlier,
        "finer_tile_runs": runs,
        "faces_from_finer_tiles": finer,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds (default 15)")
    parser.add_argument("--frames", type=int, default=90, help="stream frames (default 90)")
    parser.add_argument("--stream-rounds", type=int, default=3)
    parser.add_argument("--labelled", default=None, help="also count passes on a labelled set")
    parser.add_argument(
        "--face-free",
        default=None,
        metavar="DIR",
        help="also count the faces found on these photos, which hold none (phantoms)",
    )
    parser.add_argument("--out", default="bench/results/detect_passes.json")
    args = parser.parse_args()
    _, photos = check_photos()
    models = Session.open(Settings(provider="cpu"), memory="none", embed=False).models
    rows = pass_timings(models, photos, args.rounds)
    print("| pass | p50 ms | p90 ms |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['pass']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} |")
    cost = stream_cost(models, photos, args.frames, args.stream_rounds)
    m = cost["fps_median"]
    print(
        f"\nstream of {cost['frames']} frames, {cost['faceless_frames']} without a face: "
        f"defaults {m['defaults']:.1f} FPS ({cost['second_pass_runs_per_stream']['defaults']} "
        f"second-pass runs, {cost['finer_tile_runs_per_stream']['defaults']} with the finer "
        f"tiles), fallback_every 0 {m['fallback_every 0']:.1f} FPS; ratio "
        f"{cost['ratio']:.3f}"
    )
    rates = labelled_rates(models, args.labelled) if args.labelled else {}
    if rates:
        print(
            "\n| condition | photos | second passes | finer tiles | tiled first pass |"
            "\n|---|---:|---:|---:|---:|"
        )
        for name, r in rates.items():
            print(
                f"| {name} | {r['photos']} | {r['second_passes']:.2f} | "
                f"{r['finer_tiles']:.2f} | {r['tiled_first_pass']:.2f} |"
            )
    phantoms = face_free(models, args.face_free) if args.face_free else {}
    if phantoms:
        print(
            f"\nface-free photos: {phantoms['views']} views of {phantoms['photos']} photos; "
            f"faces from the earlier passes {phantoms['faces_from_earlier_passes']}, from the "
            f"finer tiles {phantoms['faces_from_finer_tiles']} (they ran on "
            f"{phantoms['finer_tile_runs']})"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "passes": rows,
                "stream": cost,
                "labelled": rates,
                "face_free": phantoms,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
