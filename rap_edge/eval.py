"""Evaluation helpers shared by benchmarks and tests.

Small, dependency-free (numpy only) utilities to compare an approximate nearest-neighbour
search against exact cosine search:

* :func:`exact_topk` -- brute-force cosine top-k (the ground truth).
* :func:`recall_at_k` -- fraction of queries whose true nearest neighbour is found in the top-k.
* :func:`overlap_at_k` -- mean size of the intersection of the top-k sets, divided by k.
* :func:`latency_summary` -- p50 / p99 / mean of latency samples, in milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

__all__ = [
    "cosine_rows",
    "exact_topk",
    "l2_normalize",
    "latency_summary",
    "overlap_at_k",
    "recall_at_k",
]

# Upper bound on the number of float32 scores materialised at once by ``exact_topk``
# (2**25 floats = 128 MiB), so that ground truth over 1M vectors stays memory-bounded.
_MAX_SCORES_PER_BLOCK = 1 << 25


def cosine_rows(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Row-wise cosine similarity of two [n, d] arrays (the parity measure of the exports)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    out: npt.NDArray[np.float64] = (
        (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    )
    return out


def l2_normalize(x: npt.ArrayLike, eps: float = 1e-12) -> npt.NDArray[np.float32]:
    """Return a float32 copy of ``x`` with each row scaled to unit L2 norm.

    Rows whose norm is below ``eps`` are left as (near-)zero vectors instead of producing NaNs.

    Args:
        x: Array of shape ``[n, d]`` (or ``[d]``, treated as a single row).
        eps: Norm floor used to avoid division by zero.

    Returns:
        A C-contiguous float32 array with the same shape as ``x``.

    """
    arr = np.array(x, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    arr /= np.maximum(norms, np.float32(eps))
    return arr


def _as_2d(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:  # noqa: PLR2004
        msg = f"{name} must be 1-D or 2-D, got shape {arr.shape}"
        raise ValueError(msg)
    return arr


def exact_topk(db: np.ndarray, queries: np.ndarray, k: int) -> npt.NDArray[np.int64]:
    """Exact (brute-force) cosine top-k search.

    Both ``db`` and ``queries`` are L2-normalised internally (zero rows stay zero), so inputs
    need not be pre-normalised. Scores are computed in float32 blocks with a matrix product,
    keeping peak extra memory at about 128 MiB regardless of the database size.

    Args:
        db: Database vectors, shape ``[n, d]``.
        queries: Query vectors, shape ``[nq, d]`` (a single ``[d]`` vector is accepted).
        k: Number of neighbours to return; must satisfy ``1 <= k <= n``.

    Returns:
        int64 array of shape ``[nq, k]`` with database row indices, ordered from the most to
        the least similar (ties broken arbitrarily).

    Raises:
        ValueError: If shapes are inconsistent or ``k`` is out of range.

    """
    db_n = l2_normalize(_as_2d(db, "db"))
    q_n = l2_normalize(_as_2d(queries, "queries"))
    n, d = db_n.shape
    if q_n.shape[1] != d:
        msg = f"dimension mismatch: db has d={d}, queries have d={q_n.shape[1]}"
        raise ValueError(msg)
    if not 1 <= k <= n:
        msg = f"k must be in [1, {n}], got {k}"
        raise ValueError(msg)

    nq = q_n.shape[0]
    out = np.empty((nq, k), dtype=np.int64)
    block = max(1, _MAX_SCORES_PER_BLOCK // max(n, 1))
    for start in range(0, nq, block):
        stop = min(start + block, nq)
        scores = q_n[start:stop] @ db_n.T  # [b, n], cosine similarity
        if k < n:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n), scores.shape)
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        out[start:stop] = np.take_along_axis(part, order, axis=1)
    return out


def _check_pair(found: np.ndarray, truth: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(found)
    t = np.asarray(truth)
    if f.ndim != 2 or t.ndim != 2:  # noqa: PLR2004
        msg = f"found and truth must be 2-D, got {f.shape} and {t.shape}"
        raise ValueError(msg)
    if f.shape[0] != t.shape[0]:
        msg = f"found has {f.shape[0]} queries but truth has {t.shape[0]}"
        raise ValueError(msg)
    if k < 1 or k > f.shape[1]:
        msg = f"k must be in [1, {f.shape[1]}] (columns of found), got {k}"
        raise ValueError(msg)
    if t.shape[1] < 1:
        msg = "truth must have at least one column"
        raise ValueError(msg)
    return f, t


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Fraction of queries whose true nearest neighbour appears in the first ``k`` results.

    This is the classic ``R@k`` (a.k.a. "1-recall@k") used by ANN benchmarks: for each query,
    success if ``truth[i, 0]`` is in ``found[i, :k]``.

    Args:
        found: Indices returned by the method under test, shape ``[nq, >=k]``. Missing results
            may be padded with any value that is not a valid index (e.g. ``-1``).
        truth: Exact neighbour indices, shape ``[nq, >=1]``, nearest first.
        k: Number of leading columns of ``found`` to consider.

    Returns:
        Recall in ``[0, 1]``; ``nan`` if there are no queries.

    Raises:
        ValueError: If shapes are inconsistent or ``k`` is out of range.

    """
    f, t = _check_pair(found, truth, k)
    if f.shape[0] == 0:
        return float("nan")
    hits = (f[:, :k] == t[:, :1]).any(axis=1)
    return float(hits.mean())


def overlap_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean overlap of the top-``k`` sets: ``mean(|found[:, :k] & truth[:, :k]|) / k``.

    Also known as ``k-recall@k``; stricter than :func:`recall_at_k` because every one of the
    ``k`` true neighbours counts.

    Args:
        found: Indices returned by the method under test, shape ``[nq, >=k]``.
        truth: Exact neighbour indices, shape ``[nq, >=k]``.
        k: Size of the sets to compare.

    Returns:
        Overlap in ``[0, 1]``; ``nan`` if there are no queries.

    Raises:
        ValueError: If shapes are inconsistent or ``k`` is out of range.

    """
    f, t = _check_pair(found, truth, k)
    if k > t.shape[1]:
        msg = f"k must be <= {t.shape[1]} (columns of truth), got {k}"
        raise ValueError(msg)
    if f.shape[0] == 0:
        return float("nan")
    # [nq, k, 1] == [nq, 1, k] -> for each found item, is it among the true top-k?
    # Duplicated ids in ``found`` count once.
    fk = np.sort(f[:, :k], axis=1)
    unique = np.ones_like(fk, dtype=bool)
    unique[:, 1:] = fk[:, 1:] != fk[:, :-1]
    member = (fk[:, :, None] == t[:, None, :k]).any(axis=2) & unique
    return float(member.sum(axis=1).mean() / k)


def latency_summary(samples_s: Sequence[float]) -> dict[str, float]:
    """Summarise latency samples given in seconds.

    Args:
        samples_s: Per-call latencies, in seconds.

    Returns:
        ``{"p50_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "count"}`` (``count`` as a float
        so the mapping is homogeneous). Percentiles use linear interpolation. All values are
        ``nan`` (and ``count`` is 0) for an empty input.

    """
    arr = np.asarray(samples_s, dtype=np.float64) * 1e3
    if arr.size == 0:
        nan = float("nan")
        return {
            "p50_ms": nan,
            "p99_ms": nan,
            "mean_ms": nan,
            "min_ms": nan,
            "max_ms": nan,
            "count": 0.0,
        }
    p50, p99 = np.percentile(arr, [50.0, 99.0])
    return {
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "mean_ms": float(arr.mean()),
        "min_ms": float(arr.min()),
        "max_ms": float(arr.max()),
        "count": float(arr.size),
    }
