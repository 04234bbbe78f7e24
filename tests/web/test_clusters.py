"""Unknown-face clusters of the live runtime: merge, dismiss and retention (no models)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.web import LiveClusters, Sightings, parse_last_seen_question

if TYPE_CHECKING:
    from pathlib import Path


def _clusters(tmp_path: Path) -> tuple[LiveClusters, str, str]:
    c = LiveClusters(tmp_path / "unknown", threshold=0.9)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(128).astype(np.float32), rng.standard_normal(128).astype(np.float32)
    crop = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    ida, idb = c.assign(a), c.assign(b)
    assert ida != idb
    c.offer_crop(ida, crop, 10.0, "front")
    c.offer_crop(idb, crop, 20.0, "back")
    c.offer_crop(idb, crop, 5.0, "back")
    return c, ida, idb


def test_merge_moves_faces_and_crops(tmp_path: Path) -> None:
    c, a, b = _clusters(tmp_path)
    merged = c.merge(b, a)
    assert merged.id == a and merged.count == 2
    assert len(c.crop_paths(a)) == 3
    assert all(p.is_file() for p in c.crop_paths(a))
    assert not (tmp_path / "unknown" / b).exists()
    (listed,) = c.listing()
    assert listed["cameras"] == ["back", "front"]
    again = LiveClusters(tmp_path / "unknown", threshold=0.9)  # persisted
    assert list(again.clusters) == [a]


def test_dismiss_deletes_the_crops(tmp_path: Path) -> None:
    c, a, _ = _clusters(tmp_path)
    crops = c.crop_paths(a)
    c.dismiss(a)
    assert not any(p.exists() for p in crops)
    assert a not in c.clusters


def test_retention_purges_old_crops_and_clusters(tmp_path: Path) -> None:
    c, a, b = _clusters(tmp_path)
    assert c.purge() == 0
    later = time.time() + 15 * 86400  # 15 days on, with the default 14
    assert c.purge(now=later) == 3
    assert c.clusters == {}
    assert not list((tmp_path / "unknown").rglob("*.jpg"))
    del a, b


def test_sightings_visits_retention_and_forgetting(tmp_path: Path) -> None:
    s = Sightings(tmp_path, gap_s=60.0)
    try:
        t = 1_000_000.0
        for dt in (0, 10, 20):
            s.log("c_1", "Bo", "front", t + dt)
        s.log("c_1", "Bo", "front", t + 500)  # a new visit
        s.log("c_1", "Bo", "back", t + 30)
        s.log("c_2", "Ana", "front", t + 40)
        assert s.wait_idle()
        rows = s.recent("c_1")
        assert [(r.camera, r.first_seen, r.last_seen, r.count) for r in rows] == [
            ("front", t + 500, t + 500, 1),
            ("back", t + 30, t + 30, 1),
            ("front", t, t + 20, 3),
        ]
        assert s.forget("c_1") == 3
        assert s.recent("c_1") == []
        assert s.purge(now=t + 40 + 15 * 86400) == 1
        assert s.recent() == []
    finally:
        s.close()


def test_last_seen_questions_are_recognised() -> None:
    assert parse_last_seen_question("When did you last see Bo?") == "Bo"
    assert parse_last_seen_question("when did you see Uncle Jo last") == "Uncle Jo"
    assert parse_last_seen_question("Who is here?") is None
