"""Unknown-face clusters of the live runtime: merge, dismiss and retention (no models)."""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.errors import StoreError
from rap_edge.web import LiveClusters, Sightings, parse_last_seen_question
from rap_edge.web._sightings import SIGHTINGS_FILE

if TYPE_CHECKING:
    from pathlib import Path

    from rap_edge.memory import Memory


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


def test_sightings_visits_retention_and_forgetting(memory: Memory, make_image) -> None:
    bo = memory.add("Bo", images=[make_image(1)], category="dog").id
    ana = memory.add("Ana", images=[make_image(2)], category="person").id
    s = Sightings(memory.path, gap_s=60.0)
    try:
        t = 1_000_000.0
        for dt in (0, 10, 20):
            s.log(bo, "Bo", "front", t + dt)
        s.log(bo, "Bo", "front", t + 500)  # a new visit
        s.log(bo, "Bo", "back", t + 30)
        s.log(ana, "Ana", "front", t + 40)
        assert s.wait_idle()
        rows = s.recent(bo)
        assert [(r.name, r.camera, r.first_seen, r.last_seen, r.count) for r in rows] == [
            ("Bo", "front", t + 500, t + 500, 1),
            ("Bo", "back", t + 30, t + 30, 1),
            ("Bo", "front", t, t + 20, 3),
        ]
        memory.update(bo, name="Bobo")  # listed under the concept's name of today
        assert {r.name for r in s.recent(bo)} == {"Bobo"}
        assert s.forget(bo) == 3
        assert s.recent(bo) == []
        assert s.purge(now=t + 40 + 15 * 86400) == 1
        assert s.recent() == []
    finally:
        s.close()


def test_forgetting_a_concept_anywhere_forgets_its_sightings(memory: Memory, make_image) -> None:
    bo = memory.add("Bo", images=[make_image(1)], category="dog").id
    s = Sightings(memory.path)
    try:
        s.log(bo, "Bo", "porch", 1000.0)
        assert s.wait_idle()
        assert len(s.recent(bo)) == 1
        memory.remove(bo)  # what `rap-edge memory remove` and every front end call
        assert s.recent() == []
        rows = sqlite3.connect(memory.path / "memory.db").execute("SELECT count(*) FROM sightings")
        assert rows.fetchone()[0] == 0
        s.log(bo, "Bo", "porch", 1001.0)  # a frame processed before the forget came late
        assert s.wait_idle()
        assert s.recent() == []  # not logged: the concept is gone
    finally:
        s.close()


def test_the_earlier_sightings_file_is_moved_into_the_memory(memory: Memory, make_image) -> None:
    bo = memory.add("Bo", images=[make_image(1)], category="dog").id
    old = memory.path / SIGHTINGS_FILE
    with sqlite3.connect(old) as conn:
        conn.execute(
            "CREATE TABLE sightings (id INTEGER PRIMARY KEY, concept_id TEXT, name TEXT, "
            "camera TEXT, first_seen REAL, last_seen REAL, count INTEGER)"
        )
        conn.executemany(
            "INSERT INTO sightings (concept_id, name, camera, first_seen, last_seen, count) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(bo, "Bo", "porch", 1.0, 2.0, 3), ("c_forgotten00", "Old", "porch", 1.0, 1.0, 1)],
        )
    conn.close()
    s = Sightings(memory.path)
    try:
        assert [(r.name, r.camera, r.count) for r in s.recent()] == [("Bo", "porch", 3)]
        assert not old.exists()
    finally:
        s.close()


def test_sightings_need_a_memory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no memory at"):
        Sightings(tmp_path)


def test_last_seen_questions_are_recognised() -> None:
    assert parse_last_seen_question("When did you last see Bo?") == "Bo"
    assert parse_last_seen_question("when did you see Uncle Jo last") == "Uncle Jo"
    assert parse_last_seen_question("Who is here?") is None
