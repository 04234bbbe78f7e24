"""The quality gate: low-quality faces named only above a calibrated, higher threshold.

The scoring and calibration tests use hand-made values; the quality and pipeline tests use the
real check photos and models (network-marked, as the other face tests).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.errors import ConfigError
from rap_edge.pipeline import (
    Candidate,
    Thresholds,
    calibrate_low_quality,
    decide,
)
from rap_edge.pipeline._quality import face_quality

if TYPE_CHECKING:
    from pathlib import Path

    from rap_edge.memory import Memory
    from rap_edge.pipeline import FaceModels
    from tests.conftest import Exported


def cand(cid: str, score: float) -> Candidate:
    return Candidate(cid, cid.upper(), "person", score)


def test_a_clear_match_under_the_naming_score_is_uncertain_not_unknown() -> None:
    best = [cand("a", 0.93), cand("b", 0.80)]
    assert decide(best, 0.9, 0.02, name_at=0.95) == ("uncertain", best[0])
    assert decide(best, 0.9, 0.02, name_at=0.93) == ("known", best[0])
    assert decide(best, 0.9, 0.02, name_at=None) == ("known", best[0])
    assert decide([cand("a", 0.85)], 0.9, 0.02, name_at=0.95) == ("unknown", None)


def test_the_low_quality_threshold_is_read_checked_and_applied(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    rec: dict[str, object] = {"threshold": 0.9, "low_quality_threshold": 0.93}
    path.write_text(json.dumps({"version": 1, "encoders": {"e": rec, "f": {"threshold": 0.8}}}))
    th = Thresholds.load(path)
    assert th.for_quality("e", 1.0) == 0.9
    assert th.for_quality("e", None) == 0.9
    assert th.for_quality("e", 0.4) == 0.93
    assert th.for_quality("f", 0.4) == 0.8  # no gate calibrated: the main threshold
    # A low-quality threshold under the main one never lowers the bar.
    rec["low_quality_threshold"] = 0.85
    path.write_text(json.dumps({"version": 1, "encoders": {"e": rec}}))
    assert Thresholds.load(path).for_quality("e", 0.2) == 0.9
    rec["low_quality_threshold"] = "high"
    path.write_text(json.dumps({"version": 1, "encoders": {"e": rec}}))
    with pytest.raises(ConfigError, match="low_quality_threshold must be a number"):
        Thresholds.load(path)


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), np.float32)


def test_calibration_raises_the_bar_only_for_riskier_low_quality_faces() -> None:
    rng = np.random.default_rng(0)
    gallery = _unit(rng, 40)
    labels = [f"id{i % 8}" for i in range(40)]
    # Probes: 200 distractors (label None). Low-quality ones lie close to gallery photos
    # (their impostor scores are high); full-quality ones are random.
    near = gallery[rng.integers(0, 40, 100)] + 0.4 * _unit(rng, 100)
    probes = np.concatenate([near, _unit(rng, 100)]).astype(np.float32)
    labels_p: list[str | None] = [None] * 200
    quality = [0.5] * 100 + [1.0] * 100
    out = calibrate_low_quality(
        gallery, labels, probes, labels_p, quality, far=0.001, threshold=0.5
    )
    assert out["low_quality_probes"] == 100
    assert out["low_quality_impostor_pairs"] == 100 * 40
    assert out["low_quality_far_at_threshold"] > 0.001
    assert out["low_quality_threshold"] > 0.5
    assert out["low_quality_far"] <= 0.001
    # The same probes rated full quality: nothing to calibrate on.
    none = calibrate_low_quality(
        gallery, labels, probes, labels_p, [1.0] * 200, far=0.001, threshold=0.5
    )
    assert none["low_quality_threshold"] is None
    # Random low-quality probes are no riskier than the main threshold allows: it stays.
    calm = calibrate_low_quality(
        gallery, labels, _unit(rng, 100), [None] * 100, [0.5] * 100, far=0.01, threshold=0.9
    )
    assert calm["low_quality_threshold"] == 0.9
    # A probe of an identity is an impostor only against the other identities' photos.
    own = calibrate_low_quality(
        gallery, labels, gallery[:1], ["id0"], [0.5], far=0.5, threshold=0.0
    )
    assert own["low_quality_impostor_pairs"] == 35


@pytest.mark.network
def test_small_blurred_and_dim_faces_rate_low_and_a_clear_face_full(
    face_models: Exported,
) -> None:
    from rap_edge.pipeline import FaceModels
    from rap_edge.pipeline._faces import largest

    models = FaceModels.load(face_models.out, provider="cpu")
    photo = next(p for p in face_models.photos if p.name == "obama.jpg")
    image = np.asarray(cv2.imread(str(photo)), np.uint8)

    def quality(img: np.ndarray) -> float:
        face = largest(models.detect(img, fallback=True))
        assert face is not None
        pts = models.landmarks_for_detections(img, [face])[0]
        return face_quality(models.chip(img, pts), pts)

    assert quality(image) == 1.0
    assert quality(np.asarray(cv2.GaussianBlur(image, (0, 0), 6), np.uint8)) < 1.0
    dim = np.asarray(image.astype(np.float32) * 0.12 + 4, np.uint8)
    assert quality(dim) < 1.0
    face = largest(models.detect(image))
    assert face is not None
    s = 40 / (face.x2 - face.x1)  # a 40 px wide face: eyes about 20 px apart
    small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[: small.shape[0], : small.shape[1]] = small[:480, :640]
    assert quality(frame) < 1.0


def _barack(face_models: Exported, tmp_path: Path) -> tuple[FaceModels, Memory, np.ndarray]:
    """The real face models, a memory with Barack enrolled from obama.jpg, and obama2.jpg."""
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FaceEmbedder, FaceModels, embed_faces_in_memory

    models = FaceModels.load(face_models.out, provider="cpu")
    mem = Memory.init(tmp_path / "m")
    obama = next(p for p in face_models.photos if p.name == "obama.jpg")
    mem.add("Barack", images=[obama], category="person")
    embed_faces_in_memory(mem, FaceEmbedder(models))
    photo = next(p for p in face_models.photos if p.name == "obama2.jpg")
    return models, mem, np.asarray(cv2.imread(str(photo)), np.uint8)


@pytest.mark.network
def test_the_pipeline_abstains_on_a_poor_face_it_would_have_named(
    face_models: Exported, tmp_path: Path
) -> None:
    from rap_edge.pipeline import Pipeline

    models, mem, image = _barack(face_models, tmp_path)
    blurred = np.asarray(cv2.GaussianBlur(image, (0, 0), 3), np.uint8)

    def run(img: np.ndarray, low: float | None) -> tuple[str, float | None, float | None]:
        th = Thresholds()
        th.set_default(models.encoder_id, 0.80)
        if low is not None:
            th.low_quality[models.encoder_id] = low
        (rec,) = Pipeline(models, mem, thresholds=th).process(img, independent=True).recognitions
        return rec.decision, rec.score, rec.quality

    decision, score, quality = run(blurred, None)
    assert decision == "known" and score is not None and quality is not None
    assert quality < 1.0
    assert run(blurred, min(0.999, score + 0.01))[0] == "uncertain"
    assert run(blurred, score)[0] == "known"  # at the low-quality threshold: named
    sharp = run(image, 0.999)
    assert sharp[0] == "known" and sharp[2] == 1.0  # a clear face ignores the gate


def test_noise_ratio_tells_a_dark_grainy_frame_from_a_sharp_one() -> None:
    from rap_edge.pipeline._quality import NOISY, noise_ratio

    rng = np.random.default_rng(0)
    # Sharp edges with no noise (16 px blocks): a strong response at every edge, but a large
    # spread too.
    texture = ((np.indices((240, 320)) // 16).sum(axis=0) % 2 * 200 + 20).astype(np.uint8)
    assert noise_ratio(np.dstack([texture] * 3)) < NOISY
    smooth = np.tile(np.linspace(40, 200, 320, dtype=np.float32), (240, 1))
    noisy = np.clip(smooth * 0.25 + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
    assert noise_ratio(np.dstack([noisy] * 3)) >= NOISY
    assert noise_ratio(np.zeros((2, 2, 3), np.uint8)) == 0.0  # too small to measure
    assert noise_ratio(np.zeros((50, 50, 3), np.uint8)) == 0.0  # flat black: no noise


@pytest.mark.network
def test_a_dark_grainy_photo_is_denoised_and_named_more_surely(
    face_models: Exported, tmp_path: Path
) -> None:
    """The labelled set's dim condition (25 % brightness, noise sigma 8) on a real photo: the
    frame passes the noise gate, is denoised, and Barack's score rises; the clean photo is
    left alone."""
    from rap_edge.pipeline import Pipeline, PipelineConfig

    models, mem, image = _barack(face_models, tmp_path)
    rng = np.random.default_rng(1)
    dim = np.clip(np.rint(image * 0.25 + rng.normal(0, 8, image.shape)), 0, 255).astype(np.uint8)

    def run(img: np.ndarray, denoise: bool) -> tuple[float, int, bool]:
        th = Thresholds()
        th.set_default(models.encoder_id, 0.5)
        pipe = Pipeline(models, mem, thresholds=th, config=PipelineConfig(denoise=denoise))
        res = pipe.process(img, independent=True)
        best = max((r.score or 0.0) for r in res.recognitions)
        return best, pipe.denoised, "denoise" in res.timings_ms

    plain, n, timed = run(dim, denoise=False)
    assert (n, timed) == (0, False)
    cleaned, n, timed = run(dim, denoise=True)
    assert (n, timed) == (1, True)
    assert cleaned > plain
    assert run(image, denoise=True)[1] == 0  # a clean photo is not touched
