"""Strangers (unknown-face clusters) as the session opens them: storage cap and bad limits.

No models: embeddings and crops are random arrays; this proves the bookkeeping, not the
clustering's quality (tests/live and tests/ros cover real faces).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.app import LiveClusters
from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path


def _fill(c: LiveClusters, n: int, seed: int = 0) -> list[str]:
    """``n`` strangers, one noisy crop each (noise compresses badly: kilobytes per crop)."""
    rng = np.random.default_rng(seed)
    ids = []
    for _ in range(n):
        cid = c.assign(rng.standard_normal(128).astype(np.float32))
        assert c.offer_crop(cid, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), 1.0, "cam")
        ids.append(cid)
    return ids


def test_the_storage_cap_deletes_the_oldest_crops_first(tmp_path: Path) -> None:
    probe = LiveClusters(tmp_path / "probe", threshold=0.99)
    _fill(probe, 1)
    one = probe.used_bytes()
    assert one > 1000
    cap = int(one * 3.5)  # room for three crops
    c = LiveClusters(tmp_path / "unknown", threshold=0.99, max_bytes=cap)
    ids = _fill(c, 6, seed=1)
    assert c.used_bytes() <= cap
    kept = [cid for cid in ids if cid in c.clusters]
    assert kept == ids[-len(kept) :], "the newest strangers are the ones kept"
    assert len(kept) == 3
    # what is on disk is what is listed, and it survives a reopen
    on_disk = sorted(p.parent.name for p in (tmp_path / "unknown").rglob("*.jpg"))
    assert on_disk == sorted(kept)
    again = LiveClusters(tmp_path / "unknown", threshold=0.99, max_bytes=cap)
    assert sorted(again.clusters) == sorted(kept)


def test_purge_applies_the_cap_after_the_retention(tmp_path: Path) -> None:
    c = LiveClusters(tmp_path / "unknown", threshold=0.99)
    _fill(c, 4)
    assert c.purge() == 0
    c.max_bytes = c.used_bytes() // 2
    assert c.purge() == 2  # the two oldest crops: no retention expired, the cap did it
    assert len(c.listing()) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retention_days": 0}, "retention must be a positive number of days"),
        ({"retention_days": float("nan")}, "retention must be a positive number of days"),
        ({"max_bytes": 0}, "storage cap must be a positive number of bytes"),
    ],
)
def test_absurd_limits_are_refused(tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        LiveClusters(tmp_path / "unknown", threshold=0.9, **kwargs)  # type: ignore[arg-type]


def test_a_dismissed_strangers_id_is_never_reused(tmp_path: Path) -> None:
    c = LiveClusters(tmp_path / "unknown", threshold=0.99)
    (first,) = _fill(c, 1)
    c.dismiss(first)
    (second,) = _fill(c, 1, seed=1)
    assert second != first  # a name given to the old id cannot land on a new face
    again = LiveClusters(tmp_path / "unknown", threshold=0.99)  # nor after a restart
    again.dismiss(second)
    (third,) = _fill(again, 1, seed=2)
    assert third not in {first, second}
