#!/usr/bin/env python3
"""End-to-end cost of the concept memory: search, add and remove through ``Memory``.

``bench/memory_search.py`` measures the raw index; this measures what a caller pays through the
public API (validation, SQLite look-ups of the hits, per-concept aggregation, index saves and
the fsyncs of ``synchronous=FULL``). One concept per reference image, 128-d vectors (the size
of the dlib face descriptor), random unit vectors with a fixed seed; images are tiny PNGs.

Prints a markdown table and writes ``bench/results/memory_ops.json``.

Example:
    python bench/memory_ops.py --sizes 1000 10000 --queries 300
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

DIM = 128


def _png(i: int) -> bytes:
    img = np.full((16, 16, 3), i % 251, dtype=np.uint8)
    img[0, :3] = [(i >> 16) & 255, (i >> 8) & 255, i & 255]
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        msg = "PNG encoding failed"
        raise RuntimeError(msg)
    return buf.tobytes()


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def run(size: int, queries: int, edits: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    vecs = _unit(rng, size)
    with (
        tempfile.TemporaryDirectory(prefix="rap-bench-") as tmp,
        Memory.init(Path(tmp) / "m") as mem,
    ):
        start = time.perf_counter()
        for lo in range(0, size, 1000):
            mem.add_many(
                [
                    NewConcept(f"c{i}", images=[_png(i)], vectors=vecs[i : i + 1], encoder="bench")
                    for i in range(lo, min(size, lo + 1000))
                ]
            )
        load_s = time.perf_counter() - start
        qs = vecs[rng.integers(0, size, queries)] + 0.05 * _unit(rng, queries)
        mem.search(qs[0], k=3)  # warm up: loads the index
        search = []
        for q in qs:
            t = time.perf_counter()
            mem.search(q, k=3, threshold=0.5)
            search.append(time.perf_counter() - t)
        add, remove = [], []
        for j in range(edits):
            t = time.perf_counter()
            mem.add(f"new{j}", images=[_png(size + j)], vectors=_unit(rng, 1), encoder="bench")
            add.append(time.perf_counter() - t)
        for j in range(edits):
            t = time.perf_counter()
            mem.remove(f"new{j}")
            remove.append(time.perf_counter() - t)
        return {
            "concepts": size,
            "bulk_load_s": round(load_s, 2),
            "search": latency_summary(search),
            "add": latency_summary(add),
            "remove": latency_summary(remove),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1000, 10000],
        help="numbers of concepts (default: 1000 10000)",
    )
    parser.add_argument("--queries", type=int, default=300, help="searches per size")
    parser.add_argument("--edits", type=int, default=20, help="adds and removes per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = [run(n, args.queries, args.edits, args.seed) for n in args.sizes]
    print("| concepts | search p50 / p99 (ms) | add p50 (ms) | remove p50 (ms) | bulk load (s) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        s, a, d = (dict(r[key]) for key in ("search", "add", "remove"))  # type: ignore[call-overload]
        print(
            f"| {r['concepts']} | {s['p50_ms']:.3f} / {s['p99_ms']:.3f} | {a['p50_ms']:.1f} "
            f"| {d['p50_ms']:.1f} | {r['bulk_load_s']} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "dim": DIM,
    }
    (args.out / "memory_ops.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
