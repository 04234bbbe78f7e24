#!/usr/bin/env python3
"""Benchmark USearch (HNSW, f16 / i8) against exact numpy cosine search.

What is measured, for every (dimension, database size) configuration and every USearch scalar
kind (``f16``, ``i8`` by default):

* **per-query latency** (p50 / p99, ms): one query at a time, ``k = 10``, single-threaded
  search, as a camera loop would call it (includes the Python-binding overhead);
* **recall@1 / recall@10**: fraction of queries whose *true* nearest neighbour (exact cosine)
  is the first result / among the first ten; ``overlap@10`` (``|ANN top-10 & exact top-10| / 10``)
  is reported too;
* **build time** (``--threads`` threads), **index file size** (``Index.save`` to a temp file)
  and **resident memory** (RSS delta measured with psutil around the build);
* the **exact baseline** on the same vectors: a pre-normalised, C-contiguous float32 matrix,
  one matvec (numpy/BLAS) + ``argpartition`` + sort of the top-k per query, timed with the
  default BLAS threading and with one BLAS thread (when OpenBLAS can be controlled); the
  faster is kept. Its p50 gives the ``speed-up`` column (exact p50 / USearch p50).

HNSW parameters: ``connectivity`` (M) and ``expansion_add`` (efConstruction) are fixed from the
CLI; ``expansion_search`` (ef) is auto-tuned per index unless ``--expansion-search`` is given:
ef is swept upwards over a grid and the smallest value whose recall@1 on a separate *tuning*
query set reaches ``--target-recall`` plus ``--tune-margin`` is kept; latency and recall are
then measured on the held-out *evaluation* queries (so the reported recall is not the one that
was optimised). If no ef reaches the target (typically ``i8``: USearch quantises the unit vector
to ``int8(127 * x)``, an error larger than the gap between the first and second neighbour for
some queries), the smallest ef on the recall plateau is kept and the row is flagged with ``*``.

Data (fixed seed, derived from ``--seed``, the dimension and the size, so every configuration
is reproducible on its own). Uniform / isotropic Gaussian noise in 128-d is a pathological
case for graph indexes (all distances concentrate, there is no neighbourhood structure) and
unlike real embeddings, so the vectors are drawn from a *clustered, anisotropic* model:

1. ``n // 250`` cluster centres (at least 16) ``~ N(0, I_d)`` with log-normal cluster weights
   (unbalanced cluster sizes, like identities / scenes in a camera stream);
2. each point is ``centre + 0.5 * N(0, I_d)``;
3. every point is mapped by the same linear map ``A = diag(s) Q^T`` with ``Q`` a random
   rotation and a power-law spectrum ``s_i = i^-1/2`` (variance of the i-th principal axis
   ``~ 1/i``), which gives the anisotropic, low effective dimension of learned embeddings
   (participation ratio ``(sum s_i^2)^2 / sum s_i^4`` ~18 at 128-d, ~36 at 1280-d);
4. ``n + tune + eval`` points are drawn; the query points are *held out* (not in the database)
   and perturbed with a further ``0.05 * N(0, I_d) A`` noise; everything is L2-normalised.

The same normalised float32 vectors are given to both USearch and the exact baseline; ground
truth is computed exactly (float32 GEMM, :func:`rap_edge.eval.exact_topk`).

Results are written as JSON to ``--out`` (default ``bench/results/``):
``memory_search-<UTC timestamp>.json`` plus a stable ``memory_search.json`` copy of the latest
run (``memory_search-quick*.json`` with ``--quick``), and a markdown table is printed.

Examples:
    python bench/memory_search.py --quick                 # smoke check: 10k configs, seconds
    python bench/memory_search.py                         # full run (tens of minutes)
    python bench/memory_search.py --sizes 128:1M --kinds f16 --connectivity 32
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import usearch
from tqdm import tqdm
from usearch.index import Index

try:
    from rap_edge.eval import (
        exact_topk,
        l2_normalize,
        latency_summary,
        overlap_at_k,
        recall_at_k,
    )
except ModuleNotFoundError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from rap_edge.eval import (
        exact_topk,
        l2_normalize,
        latency_summary,
        overlap_at_k,
        recall_at_k,
    )

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import numpy.typing as npt

    F32 = npt.NDArray[np.float32]
    I64 = npt.NDArray[np.int64]

K = 10
DEFAULT_SIZES = ("128:10k", "128:100k", "128:1M", "1280:10k", "1280:100k")
EF_GRID = (16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024)
TARGET = {"dim": 128, "n": 1_000_000, "p50_ms": 1.0, "recall_at_1": 0.99, "speedup": 20.0}
# Data model constants (see module docstring).
POINTS_PER_CLUSTER = 250
MIN_CLUSTERS = 16
WITHIN_CLUSTER_STD = 0.5
QUERY_PERTURBATION = 0.05
VARIANCE_DECAY = 1.0  # variance of principal axis i ~ i^-VARIANCE_DECAY
# Exact search is timed on fewer queries for large databases (it is slow and very regular).
EXACT_FULL_QUERY_LIMIT = 50_000_000  # n * d above which --exact-queries defaults to 100
MIB = float(1 << 20)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def make_dataset(n: int, d: int, n_queries: int, seed: int) -> tuple[F32, F32]:
    """Clustered anisotropic vectors and perturbed held-out queries, all L2-normalised.

    Args:
        n: Database size.
        d: Dimension.
        n_queries: Number of held-out query points.
        seed: Base seed; combined with ``n`` and ``d``.

    Returns:
        ``(db [n, d], queries [n_queries, d])``, float32, unit norm.
    """
    rng = np.random.default_rng([seed, d, n])
    n_clusters = max(MIN_CLUSTERS, n // POINTS_PER_CLUSTER)
    weights = rng.lognormal(0.0, 1.0, n_clusters)
    weights /= weights.sum()
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32)
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spectrum = np.arange(1, d + 1, dtype=np.float64) ** (-VARIANCE_DECAY / 2.0)
    mix = np.ascontiguousarray((rot * spectrum).T, dtype=np.float32)  # x = z @ mix

    total = n + n_queries
    labels = rng.choice(n_clusters, size=total, p=weights)
    out = np.empty((total, d), dtype=np.float32)
    chunk = max(1, (1 << 24) // d)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        z = centres[labels[start:stop]]
        z += np.float32(WITHIN_CLUSTER_STD) * rng.standard_normal(
            (stop - start, d), dtype=np.float32
        )
        out[start:stop] = z @ mix
    held_out = rng.permutation(total)[:n_queries]
    keep = np.ones(total, dtype=bool)
    keep[held_out] = False
    queries = out[held_out]
    noise = rng.standard_normal(queries.shape, dtype=np.float32) @ mix
    queries += np.float32(QUERY_PERTURBATION) * noise
    db = out[keep]
    del out
    db = l2_normalize(db)
    return db, l2_normalize(queries)


# --------------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------------
def pin_malloc_thresholds() -> bool:
    """Make glibc serve large allocations with ``mmap`` and return freed memory to the OS.

    By default glibc raises its mmap threshold dynamically after large frees, so a later
    allocation of a few MiB may reuse already-resident heap memory and show up as a zero RSS
    delta. Pinning the thresholds keeps RSS deltas meaningful for the smaller configurations.

    Returns:
        True if the thresholds were set (Linux/glibc), False otherwise.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok_mmap = libc.mallopt(m_mmap_threshold, 1 << 17)
    ok_trim = libc.mallopt(m_trim_threshold, 1 << 17)
    return bool(ok_mmap and ok_trim)


def _openblas_funcs() -> tuple[Any, Any] | None:
    """``(set_num_threads, get_num_threads)`` of the OpenBLAS loaded by numpy, if found."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8")
    except OSError:
        return None
    paths = sorted(
        {
            line.split()[-1]
            for line in maps.splitlines()
            if "openblas" in line.lower() and ".so" in line
        }
    )
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    return setter, getter
    return None


def blas_thread_options() -> list[int]:
    """BLAS thread counts to try for the exact baseline (``0`` = leave the default)."""
    funcs = _openblas_funcs()
    if funcs is None or int(funcs[1]()) <= 1:
        return [0]
    return [0, 1]


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Temporarily set the OpenBLAS thread count (no-op for ``n == 0`` or unknown BLAS)."""
    funcs = _openblas_funcs() if n else None
    if funcs is None:
        yield
        return
    setter, getter = funcs
    previous = int(getter())
    setter(n)
    try:
        yield
    finally:
        setter(previous)


def rss_bytes() -> int:
    """Current resident set size of this process, in bytes."""
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def exact_query(db_n: F32, q: F32, k: int) -> I64:
    """Exact cosine top-k for one unit query: one matvec + argpartition (+ sort of k)."""
    scores = db_n @ q
    n = scores.shape[0]
    top = np.argpartition(scores, n - k)[n - k :]
    return top[np.argsort(-scores[top])].astype(np.int64, copy=False)


def time_queries(
    search: Callable[[F32], I64],
    queries: F32,
    *,
    repeat: int = 1,
    warmup: int = 10,
    desc: str | None = None,
) -> tuple[I64, list[float]]:
    """Run ``search`` one query at a time, returning results and per-call latencies (s)."""
    for q in queries[: min(warmup, len(queries))]:
        search(q)
    found = np.full((len(queries), K), -1, dtype=np.int64)
    samples: list[float] = []
    total = repeat * len(queries)
    with tqdm(total=total, desc=desc, leave=False, disable=desc is None, unit="q") as bar:
        for r in range(repeat):
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                res = search(q)
                samples.append(time.perf_counter() - t0)
                if r == 0:
                    found[i, : len(res)] = res[:K]
                bar.update()
    return found, samples


def usearch_searcher(index: Index) -> Callable[[F32], I64]:
    """Single-query, single-thread USearch search returning int64 keys."""

    def search(q: F32) -> I64:
        return np.asarray(index.search(q, K, threads=1).keys, dtype=np.int64)

    return search


def build_index(  # noqa: PLR0913
    db: F32,
    *,
    kind: str,
    connectivity: int,
    expansion_add: int,
    threads: int,
    desc: str,
) -> tuple[Index, float, int]:
    """Build a cosine HNSW index; returns ``(index, build_seconds, rss_delta_bytes)``."""
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = Index(
        ndim=db.shape[1],
        metric="cos",
        dtype=kind,
        connectivity=connectivity,
        expansion_add=expansion_add,
    )
    n = db.shape[0]
    chunk = max(10_000, n // 100)
    with tqdm(total=n, desc=desc, unit="vec", unit_scale=True, leave=False) as bar:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            index.add(np.arange(start, stop, dtype=np.uint64), db[start:stop], threads=threads)
            bar.update(stop - start)
    build_s = time.perf_counter() - t0
    return index, build_s, rss_bytes() - rss0


def index_file_size(index: Index, tmpdir: str | None) -> int:
    """Save ``index`` to a temporary file and return its size in bytes."""
    with tempfile.TemporaryDirectory(prefix="memory_search-", dir=tmpdir) as tmp:
        path = Path(tmp) / "index.usearch"
        index.save(str(path))
        return path.stat().st_size


def tune_expansion_search(
    index: Index,
    tune_q: F32,
    tune_truth: I64,
    target: float,
) -> tuple[int, bool, list[dict[str, float]]]:
    """Smallest ef from ``EF_GRID`` whose recall@1 on the tuning queries reaches ``target``.

    Returns:
        ``(ef, reached, sweep)``; if the target is never reached, ``ef`` is the smallest value
        within 0.002 of the best recall@1 seen (the plateau) and ``reached`` is False.
    """
    sweep: list[dict[str, float]] = []
    search = usearch_searcher(index)
    for ef in EF_GRID:
        index.expansion_search = ef  # type: ignore[misc]  # usearch property has a setter
        found, samples = time_queries(search, tune_q)
        r1 = recall_at_k(found, tune_truth, 1)
        sweep.append(
            {
                "expansion_search": ef,
                "recall_at_1": r1,
                "p50_ms": latency_summary(samples)["p50_ms"],
            }
        )
        if r1 >= target:
            return ef, True, sweep
        plateau = (
            len(sweep) >= 4
            and max(s["recall_at_1"] for s in sweep[-4:])
            <= min(s["recall_at_1"] for s in sweep[-4:]) + 1e-9
        )
        if plateau:
            break
    best = max(s["recall_at_1"] for s in sweep)
    ef = int(next(s["expansion_search"] for s in sweep if s["recall_at_1"] >= best - 0.002))
    return ef, False, sweep


def bench_exact(db: F32, queries: F32, truth: I64, label: str) -> dict[str, Any]:
    """Time the exact baseline; the "index" is a pre-normalised float32 copy of ``db``.

    Timed with the default BLAS threading and, if controllable, with a single BLAS thread
    (multi-threaded gemv can lose badly on a busy 2-core box); the faster one is reported.
    """
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    db_n = np.ascontiguousarray(l2_normalize(db))
    build_s = time.perf_counter() - t0
    rss_delta = rss_bytes() - rss0
    by_threads: dict[str, dict[str, float]] = {}
    best: tuple[I64, dict[str, float], str] | None = None
    for threads in blas_thread_options():
        key = str(threads) if threads else "default"
        with blas_threads(threads):
            found, samples = time_queries(
                partial(exact_query, db_n, k=K), queries, desc=f"{label} exact blas={key}"
            )
        lat = latency_summary(samples)
        by_threads[key] = lat
        if best is None or lat["p50_ms"] < best[1]["p50_ms"]:
            best = (found, lat, key)
    if best is None:  # pragma: no cover - blas_thread_options() is never empty
        msg = "no BLAS configuration was timed"
        raise RuntimeError(msg)
    found, lat, blas_key = best
    tqdm.write(
        f"[{label}] exact p50 {lat['p50_ms']:.3f} ms ({len(queries)} queries, "
        f"BLAS threads {blas_key}; all: "
        + ", ".join(f"{k}={v['p50_ms']:.3f}" for k, v in by_threads.items())
        + ")"
    )
    return {
        "method": "exact",
        "kind": "f32",
        "queries_timed": len(queries),
        "blas_threads": blas_key,
        "latency_by_blas_threads": by_threads,
        "build_s": build_s,
        "file_bytes": db_n.nbytes,
        "rss_delta_bytes": rss_delta,
        **lat,
        "recall_at_1": recall_at_k(found, truth, 1),
        "recall_at_10": recall_at_k(found, truth, K),
        "overlap_at_10": overlap_at_k(found, truth, K),
        "speedup_vs_exact": 1.0,
    }


# --------------------------------------------------------------------------------------------
# One configuration
# --------------------------------------------------------------------------------------------
def run_config(d: int, n: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Benchmark exact search and every USearch kind on one dataset."""
    n_eval, n_tune = args.queries, args.tune_queries
    label = f"{d}-d {fmt_n(n)}"
    t0 = time.perf_counter()
    db, queries = make_dataset(n, d, n_eval + n_tune, args.seed)
    eval_q, tune_q = queries[:n_eval], queries[n_eval:]
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    truth = exact_topk(db, queries, K)
    gt_s = time.perf_counter() - t0
    eval_truth, tune_truth = truth[:n_eval], truth[n_eval:]
    tqdm.write(
        f"[{label}] data {gen_s:.1f}s, ground truth {gt_s:.1f}s "
        f"({n_eval} eval + {n_tune} tuning queries)"
    )
    common = {
        "dim": d,
        "n": n,
        "queries_eval": n_eval,
        "queries_tune": n_tune,
        "data_gen_s": gen_s,
        "ground_truth_s": gt_s,
    }
    rows: list[dict[str, Any]] = []

    n_exact = args.exact_queries
    if n_exact is None:
        n_exact = n_eval if n * d <= EXACT_FULL_QUERY_LIMIT else min(n_eval, 100)
    exact_row = bench_exact(db, eval_q[:n_exact], eval_truth[:n_exact], label)
    rows.append({**common, **exact_row})
    exact_lat = {"p50_ms": float(exact_row["p50_ms"])}

    for kind in args.kinds:
        index, build_s, rss_delta = build_index(
            db,
            kind=kind,
            connectivity=args.connectivity,
            expansion_add=args.expansion_add,
            threads=args.threads,
            desc=f"{label} build {kind}",
        )
        tqdm.write(f"[{label}] {kind}: built in {build_s:.1f}s with {args.threads} threads")
        file_bytes = index_file_size(index, args.tmpdir)
        if args.expansion_search is not None:
            ef, reached, sweep = args.expansion_search, None, list[dict[str, float]]()
        else:
            tune_target = min(1.0, args.target_recall + args.tune_margin)
            ef, reached, sweep = tune_expansion_search(index, tune_q, tune_truth, tune_target)
        index.expansion_search = ef  # type: ignore[misc]  # usearch property has a setter
        found, samples = time_queries(
            usearch_searcher(index), eval_q, repeat=args.repeat, desc=f"{label} {kind} ef={ef}"
        )
        lat = latency_summary(samples)
        row = {
            **common,
            "method": "usearch",
            "kind": kind,
            "queries_timed": n_eval,
            "timing_repeats": args.repeat,
            "threads_build": args.threads,
            "connectivity": int(index.connectivity),
            "expansion_add": int(index.expansion_add),
            "expansion_search": int(index.expansion_search),
            "ef_target_reached": reached,
            "ef_sweep": sweep,
            "hardware_acceleration": str(index.hardware_acceleration),
            "build_s": build_s,
            "file_bytes": file_bytes,
            "rss_delta_bytes": rss_delta,
            "index_memory_usage_bytes": int(index.memory_usage),
            **lat,
            "recall_at_1": recall_at_k(found, eval_truth, 1),
            "recall_at_10": recall_at_k(found, eval_truth, K),
            "overlap_at_10": overlap_at_k(found, eval_truth, K),
            "speedup_vs_exact": exact_lat["p50_ms"] / lat["p50_ms"],
        }
        rows.append(row)
        tqdm.write(
            f"[{label}] {kind}: ef={ef} p50 {lat['p50_ms']:.3f} ms, "
            f"R@1 {row['recall_at_1']:.3f}, x{row['speedup_vs_exact']:.0f} vs exact"
        )
        del index
        gc.collect()
    return rows


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def fmt_n(n: int) -> str:
    """Human size: 10000 -> '10k', 1000000 -> '1M'."""
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render result rows as a GitHub markdown table."""
    header = [
        "dim",
        "n",
        "method",
        "M",
        "ef_add",
        "ef_search",
        "build s",
        "file MiB",
        "RSS Δ MiB",
        "p50 ms",
        "p99 ms",
        "R@1",
        "R@10",
        "overlap@10",
        "speed-up",
        "queries",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        usearch_row = r["method"] == "usearch"
        ef = str(r["expansion_search"]) if usearch_row else "-"
        if usearch_row and r["ef_target_reached"] is False:
            ef += "*"
        cells = [
            str(r["dim"]),
            fmt_n(r["n"]),
            f"usearch {r['kind']}" if usearch_row else "exact f32",
            str(r["connectivity"]) if usearch_row else "-",
            str(r["expansion_add"]) if usearch_row else "-",
            ef,
            f"{r['build_s']:.1f}" if usearch_row else "-",
            f"{r['file_bytes'] / MIB:.1f}",
            f"{r['rss_delta_bytes'] / MIB:.1f}",
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['recall_at_1']:.3f}",
            f"{r['recall_at_10']:.3f}",
            f"{r['overlap_at_10']:.3f}",
            f"{r['speedup_vs_exact']:.1f}x",
            str(r["queries_timed"]) + (f"x{r['timing_repeats']}" if usearch_row else ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_target(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate the 1M x 128-d target for each USearch kind present."""
    checks = []
    for r in rows:
        if r["method"] != "usearch" or r["dim"] != TARGET["dim"] or r["n"] != TARGET["n"]:
            continue
        ok = {
            "p50": r["p50_ms"] <= TARGET["p50_ms"],
            "recall_at_1": r["recall_at_1"] >= TARGET["recall_at_1"],
            "speedup": r["speedup_vs_exact"] >= TARGET["speedup"],
        }
        checks.append(
            {
                "kind": r["kind"],
                "p50_ms": r["p50_ms"],
                "recall_at_1": r["recall_at_1"],
                "speedup_vs_exact": r["speedup_vs_exact"],
                "checks": ok,
                "met": all(ok.values()),
            }
        )
    return checks


def environment() -> dict[str, Any]:
    """Machine / library description stored alongside the results."""
    blas: Any = None
    try:
        cfg: Any = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas")
    except (TypeError, AttributeError):  # pragma: no cover - old numpy
        pass
    freq = psutil.cpu_freq()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_freq_mhz": freq.max or freq.current if freq else None,
        "memory_total_bytes": psutil.virtual_memory().total,
        "numpy": np.__version__,
        "blas": blas,
        "blas_thread_env": {
            v: os.environ[v]
            for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            if v in os.environ
        },
        "usearch": usearch.__version__,
    }


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def parse_size(token: str) -> tuple[int, int]:
    """Parse ``DIM:N`` (N may use k/M suffixes), e.g. ``128:1M`` -> ``(128, 1000000)``."""
    try:
        dim_s, n_s = token.strip().split(":")
        mult = {"k": 1_000, "m": 1_000_000}.get(n_s[-1].lower(), 1)
        n = int(float(n_s[:-1] if mult > 1 else n_s) * mult)
        dim = int(dim_s)
    except ValueError as exc:
        msg = f"invalid size {token!r}; expected DIM:N such as 128:100k or 1280:10000"
        raise argparse.ArgumentTypeError(msg) from exc
    if dim < 1 or n <= K:
        msg = f"invalid size {token!r}: need dim >= 1 and n > {K}"
        raise argparse.ArgumentTypeError(msg)
    return dim, n


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="memory_search.py",
        description=doc.split("Examples:", 1)[0].rstrip(),
        epilog="Examples:\n" + doc.split("Examples:\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        metavar="DIM:N",
        default=None,
        help="configurations as DIM:N (k/M suffixes, comma or space separated); "
        f"default: {','.join(DEFAULT_SIZES)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: only the 10k configurations (unless --sizes is given), 100 eval / "
        "200 tuning queries, results saved as memory_search-quick*.json; runs in seconds",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["f16", "i8"],
        choices=["f32", "bf16", "f16", "i8"],
        help="USearch scalar kinds to benchmark (default: f16 i8)",
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=None,
        metavar="N",
        help="evaluation queries per configuration (default 300, quick 100)",
    )
    parser.add_argument(
        "--tune-queries",
        type=int,
        default=None,
        metavar="N",
        help="separate queries used to tune expansion_search (default 500, quick 200)",
    )
    parser.add_argument(
        "--exact-queries",
        type=int,
        default=None,
        metavar="N",
        help="queries timed for the exact baseline (default: all eval queries, "
        "100 when n*d > 5e7, e.g. 1M x 128-d)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="R",
        help="timing passes over the eval queries for USearch, pooled into "
        "p50/p99 (default 3, quick 1)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads used to build the index (default: all cores, "
        "%(default)s here); search is always single-threaded",
    )
    parser.add_argument(
        "--connectivity",
        type=int,
        default=32,
        metavar="M",
        help="HNSW connectivity / M (default %(default)s)",
    )
    parser.add_argument(
        "--expansion-add",
        type=int,
        default=128,
        metavar="EF",
        help="HNSW expansion_add / efConstruction (default %(default)s)",
    )
    parser.add_argument(
        "--expansion-search",
        type=int,
        default=None,
        metavar="EF",
        help="fix HNSW expansion_search instead of auto-tuning it",
    )
    parser.add_argument(
        "--target-recall",
        type=float,
        default=0.99,
        metavar="R",
        help="recall@1 the ef auto-tuning aims for (default %(default)s)",
    )
    parser.add_argument(
        "--tune-margin",
        type=float,
        default=0.005,
        metavar="D",
        help="safety margin: ef is tuned for recall@1 >= target + D on the "
        "tuning queries (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="base RNG seed (default 0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        metavar="DIR",
        help="output directory for JSON (default bench/results)",
    )
    parser.add_argument(
        "--tmpdir",
        default=None,
        metavar="DIR",
        help="where to save index files to measure their size (default: system temp)",
    )
    return parser


def resolve_args(args: argparse.Namespace) -> list[tuple[int, int]]:
    """Fill mode-dependent defaults; return the list of ``(dim, n)`` configurations."""
    if args.sizes:
        sizes = [parse_size(tok) for arg in args.sizes for tok in arg.split(",") if tok.strip()]
    else:
        sizes = [parse_size(tok) for tok in DEFAULT_SIZES]
        if args.quick:
            sizes = [(d, n) for d, n in sizes if n <= 10_000]
    if args.queries is None:
        args.queries = 100 if args.quick else 300
    if args.tune_queries is None:
        args.tune_queries = 200 if args.quick else 500
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    for name in ("queries", "tune_queries", "repeat", "threads"):
        if getattr(args, name) < 1:
            msg = f"--{name.replace('_', '-')} must be >= 1"
            raise SystemExit(msg)
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    sizes = resolve_args(args)
    malloc_pinned = pin_malloc_thresholds()
    started = dt.datetime.now(dt.UTC)
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for d, n in sizes:
        rows.extend(run_config(d, n, args))
        gc.collect()
    table = markdown_table(rows)
    targets = check_target(rows)

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {
        "benchmark": "memory_search",
        "started_utc": started.isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - t_start,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {
            **config,
            "sizes": [f"{d}:{n}" for d, n in sizes],
            "k": K,
            "ef_grid": list(EF_GRID),
        },
        "dataset": {
            "model": "clustered anisotropic Gaussian; held-out perturbed queries; L2-normalised",
            "points_per_cluster": POINTS_PER_CLUSTER,
            "min_clusters": MIN_CLUSTERS,
            "cluster_weights": "lognormal(0, 1)",
            "within_cluster_std": WITHIN_CLUSTER_STD,
            "spectrum": f"s_i = i^-({VARIANCE_DECAY}/2)",
            "query_perturbation": QUERY_PERTURBATION,
            "metric": "cosine",
        },
        "environment": {**environment(), "malloc_thresholds_pinned": malloc_pinned},
        "target": TARGET,
        "target_checks": targets,
        "results": rows,
        "table_markdown": table,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "memory_search-quick" if args.quick else "memory_search"
    path = args.out / f"{stem}-{started.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    shutil.copyfile(path, args.out / f"{stem}.json")

    print(table)
    if any(r["method"] == "usearch" and r["ef_target_reached"] is False for r in rows):
        print(
            f"\n`*` expansion_search never reached recall@1 >= {args.target_recall} on the "
            "tuning queries; the smallest ef on the recall plateau is shown."
        )
    for t in targets:
        status = "MET" if t["met"] else "NOT met"
        print(
            f"\nTarget (1M x 128-d, {t['kind']}): p50 {t['p50_ms']:.3f} ms <= "
            f"{TARGET['p50_ms']} ms, recall@1 {t['recall_at_1']:.3f} >= "
            f"{TARGET['recall_at_1']}, speed-up {t['speedup_vs_exact']:.1f}x >= "
            f"{TARGET['speedup']:.0f}x: {status}"
        )
    print(f"\nJSON: {path}  (latest: {args.out / (stem + '.json')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
