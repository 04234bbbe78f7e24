"""Scoring, thresholds files, track votes, IoU tracking, text mentions, unknown clusters.

Pure logic on hand-made values: no models involved.
"""

from __future__ import annotations

import json
from collections import deque
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.errors import ConceptNotFoundError, ConfigError, InvalidInputError
from rap_edge.pipeline import (
    Candidate,
    Observation,
    PipelineConfig,
    Thresholds,
    Track,
    Tracker,
    UnknownClusters,
    box_iou,
    decide,
    mentioned_concepts,
)

if TYPE_CHECKING:
    from pathlib import Path

    from rap_edge.memory import Memory


def cand(cid: str, score: float) -> Candidate:
    return Candidate(cid, cid.upper(), "person", score)


def test_decide_never_forces_a_match_and_flags_close_calls() -> None:
    assert decide([], 0.9, 0.02) == ("unknown", None)
    assert decide([cand("a", 0.89)], 0.9, 0.02) == ("unknown", None)
    assert decide([cand("a", 0.95), cand("b", 0.80)], 0.9, 0.02) == ("known", cand("a", 0.95))
    assert decide([cand("a", 0.95), cand("b", 0.94)], 0.9, 0.02)[0] == "uncertain"
    # A runner-up just under the threshold still makes the pair too close to call.
    assert decide([cand("a", 0.905), cand("b", 0.895)], 0.9, 0.02)[0] == "uncertain"
    assert decide([cand("a", 0.9)], 0.9, 0.0) == ("known", cand("a", 0.9))


def test_thresholds_file_roundtrip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"version": 1, "encoders": {"e1": {"threshold": 0.8, "pairs": 3}}}))
    th = Thresholds.load(path, margin=0.05)
    th.set_default("e1", 0.5)
    th.set_default("e2", 0.7)
    assert th.get("e1") == 0.8 and th.source("e1") == str(path)
    assert th.get("e2") == 0.7 and th.source("e2") == "manifest"
    assert th.details["e1"]["pairs"] == 3 and th.margin == 0.05
    with pytest.raises(ConfigError, match="no threshold for encoder 'e3'"):
        th.get("e3")
    with pytest.raises(ConfigError, match="not found"):
        Thresholds.load(tmp_path / "missing.json")
    for bad, why in (
        (b"{", "not a readable JSON"),
        (b'{"version": 2}', "version-1"),
        (b'{"version": 1, "encoders": {"e": {"threshold": 2}}}', "in \\[-1, 1\\]"),
        (b'{"version": 1, "encoders": []}', "'encoders' must be"),
        (b"\xff\xfe", "not a readable JSON"),
    ):
        path.write_bytes(bad)
        with pytest.raises(ConfigError, match=why):
            Thresholds.load(path)
    path.write_text(json.dumps({"version": 1, "encoders": {}}))
    with pytest.raises(InvalidInputError, match="margin"):
        Thresholds.load(path, margin=1.5)


def test_pipeline_config_refuses_absurd_values() -> None:
    PipelineConfig().check()
    for field, value in (
        ("k", 0),
        ("embed_every", -1),
        ("margin", 2.0),
        ("track_iou", -0.1),
        ("detect_max_side", 10),
        ("vote_window", True),
    ):
        with pytest.raises(InvalidInputError, match=field):
            PipelineConfig(**{field: value}).check()


def _track(*obs: Observation) -> Track:
    return Track(1, "face", (0, 0, 1, 1), 0, 0, deque(obs, maxlen=7))


def test_track_vote_majority_unknown_and_split() -> None:
    a = Observation("known", "a", 0.95, ())
    b = Observation("known", "b", 0.93, ())
    unk = Observation("unknown", None, 0.5, ())
    assert _track(a).vote() == a
    voted = _track(a, a, b).vote()
    assert (voted.decision, voted.concept_id) == ("known", "a")
    assert _track(unk, unk, a).vote().decision == "unknown"
    assert _track(a, b).vote().decision == "uncertain"  # no strict majority
    assert _track(a, b, unk).vote().decision == "uncertain"


def test_tracker_keeps_ids_across_motion_and_expires_tracks() -> None:
    tr = Tracker(min_iou=0.3, max_missed=2)
    first = tr.update(0, "face", [(0, 0, 10, 10), (50, 50, 60, 60)])
    moved = tr.update(1, "face", [(51, 51, 61, 61), (1, 1, 11, 11)])
    assert [t.id for t in moved] == [first[1].id, first[0].id]
    other = tr.update(1, "object", [(0, 0, 10, 10)])
    assert other[0].id not in {t.id for t in first}  # kinds never share tracks
    for f in range(2, 6):
        tr.update(f, "face", [])
    assert [t.kind for t in tr.tracks.values()] == ["object"]
    new = tr.update(6, "face", [(0, 0, 10, 10)])
    assert new[0].id not in {t.id for t in first}


def test_embedding_reuse_rule() -> None:
    t = _track()
    assert t.needs_embedding(0, 10, 0.6)
    t.embedding = np.zeros(4, np.float32)
    t.embedded_box, t.embedded_frame = (0, 0, 10, 10), 0
    t.box = (0, 0, 10, 10)
    assert not t.needs_embedding(9, 10, 0.6)
    assert t.needs_embedding(10, 10, 0.6)  # too old
    assert t.needs_embedding(1, 1, 0.6)  # every frame
    t.box = (5, 5, 15, 15)  # moved: IoU 0.14
    assert t.needs_embedding(1, 10, 0.6)
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0


def test_mentions_whole_words_any_case_longest_first(memory: Memory) -> None:
    memory.add("Anna", category="person")
    memory.add("Anna Maria", category="person")
    memory.add("Bo", category="dog", aliases=["<bo>"])
    memory.add("Mug", category="mug")
    assert memory.categories() == {"person", "dog", "mug"}
    got = [c.name for c in mentioned_concepts("Where is ANNA MARIA? Did <bo> see bob?", memory)]
    assert got == ["Anna Maria", "Bo"]
    assert [c.name for c in mentioned_concepts("anna and annabel; mugs", memory)] == ["Anna"]
    assert mentioned_concepts("", memory) == []


def test_unknown_clusters_group_persist_and_keep_best_crops(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    clusters = UnknownClusters(tmp_path / "unk", threshold=0.9, max_crops=2)
    ca = clusters.assign(a.astype(np.float32))
    assert clusters.assign((a + 0.01 * rng.standard_normal(16)).astype(np.float32)) == ca
    cb = clusters.assign(b.astype(np.float32))
    assert cb != ca
    crop = np.full((8, 8, 3), 100, np.uint8)
    for q in (1.0, 3.0, 2.0, 0.5):
        clusters.offer_crop(ca, crop, q)
    assert [q for q, _ in clusters.clusters[ca].crops] == [3.0, 2.0]
    assert len(list((tmp_path / "unk" / ca).iterdir())) == 2
    again = UnknownClusters(tmp_path / "unk", threshold=0.9)
    assert again.clusters[ca].count == 2 and len(again.crop_paths(ca)) == 2
    again.forget(ca)
    with pytest.raises(ConceptNotFoundError, match=f"no unknown-face cluster '{ca}'"):
        UnknownClusters(tmp_path / "unk", threshold=0.9).crop_paths(ca)
    (tmp_path / "unk" / "clusters.json").write_text("{")
    with pytest.raises(Exception, match="unreadable unknown-face clusters"):
        UnknownClusters(tmp_path / "unk", threshold=0.9)


def test_calibrated_threshold_meets_the_far_exactly_and_never_rounds_down() -> None:
    from rap_edge.pipeline import calibrate_threshold

    # Identity a: two photos; b: one; one distractor. 2-d unit vectors at chosen angles.
    angles = {"a1": 0.0, "a2": 0.3, "b1": 1.2, "d": 0.9}
    vec = np.array([[np.cos(t), np.sin(t)] for t in angles.values()], dtype=np.float32)
    labels = ["a", "a", "b", None]
    got = calibrate_threshold(vec, labels, far=0.2)
    sims = vec @ vec.T
    impostors = sorted([sims[0, 2], sims[1, 2], sims[3, 0], sims[3, 1], sims[3, 2]])
    assert got["genuine_pairs"] == 1 and got["impostor_pairs"] == 5
    # FAR 0.2 of 5 pairs allows one impostor above the threshold, not two.
    assert impostors[-2] < got["threshold"] <= impostors[-1] + 1e-6
    assert got["far"] == pytest.approx(0.2) and got["frr"] == 0.0
    strict = calibrate_threshold(vec, labels, far=0.01)
    assert strict["threshold"] > impostors[-1] and strict["far"] == 0.0
    with pytest.raises(InvalidInputError, match="false-accept rate"):
        calibrate_threshold(vec, labels, far=0.0)
    with pytest.raises(InvalidInputError, match="genuine and impostor pairs"):
        calibrate_threshold(vec[:3], ["a", "b", "c"], far=0.1)
