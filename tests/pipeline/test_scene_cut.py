"""Scene cuts in a stream: tracks are dropped when the resolution or the whole frame changes.

Real check photos and models. A face frame of Obama moves a few pixels per frame (one scene, one
track, reused embeddings), then Biden's face frame replaces it at the same place: without the
cut his face would continue Obama's track and inherit its name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.memory import Memory
from rap_edge.pipeline import FaceEmbedder, FaceModels, Pipeline, PipelineConfig
from rap_edge.pipeline import embed_faces_in_memory as embed
from rap_edge.pipeline._faces import largest
from tests.cli.test_run_photos import _face_frame

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def models(face_models: Exported) -> FaceModels:
    return FaceModels.load(face_models.out, provider="cpu")


def _frames(face_models: Exported, models: FaceModels) -> dict[str, np.ndarray]:
    out = {}
    for p in face_models.photos:
        img = np.asarray(cv2.imread(str(p)), np.uint8)
        face = largest(models.detect(img))
        assert face is not None
        out[p.stem] = _face_frame(img, face.box)
    return out


def _shift(img: np.ndarray, dx: int) -> np.ndarray:
    m = np.array([[1, 0, dx], [0, 1, dx // 2]], np.float32)
    return np.asarray(cv2.warpAffine(img, m, (img.shape[1], img.shape[0])), np.uint8)


def test_tracks_end_at_a_scene_cut_and_at_a_new_resolution(
    face_models: Exported, models: FaceModels, tmp_path: Path
) -> None:
    frames = _frames(face_models, models)
    mem = Memory.init(tmp_path / "mem")
    obama = next(p for p in face_models.photos if p.name == "obama.jpg")
    mem.add("Barack", images=[obama], category="person")
    assert embed(mem, FaceEmbedder(models)) == 1
    pipe = Pipeline(models, mem)
    moving = [pipe.process(_shift(frames["obama2"], dx)) for dx in range(0, 8, 2)]
    assert not any(r.scene_cut for r in moving)
    assert len({r.recognitions[0].track_id for r in moving}) == 1  # one scene, one track
    assert [r.recognitions[0].embedded for r in moving] == [True, False, False, False]
    assert all(r.recognitions[0].name == "Barack" for r in moving)
    cut = pipe.process(frames["biden"])
    assert cut.scene_cut and pipe.scene_cuts == 1
    (rec,) = cut.recognitions
    assert rec.embedded and rec.decision == "unknown"
    assert rec.track_id != moving[0].recognitions[0].track_id
    bigger = pipe.process(np.asarray(cv2.resize(frames["biden"], (800, 600)), np.uint8))
    assert bigger.scene_cut and bigger.recognitions[0].track_id != rec.track_id
    # With the cut turned off the same stream carries Obama's name onto Biden's face: the
    # failure the cut prevents.
    blind = Pipeline(models, mem, config=PipelineConfig(scene_cut=0.0))
    for dx in range(0, 8, 2):
        blind.process(_shift(frames["obama2"], dx))
    carried = blind.process(frames["biden"])
    assert not carried.scene_cut and carried.recognitions[0].name == "Barack"


def test_independent_frames_keep_nothing(
    face_models: Exported, models: FaceModels, tmp_path: Path
) -> None:
    frames = _frames(face_models, models)
    mem = Memory.init(tmp_path / "mem")
    pipe = Pipeline(models, mem)
    first = pipe.process(frames["obama2"], independent=True)
    second = pipe.process(frames["obama2"], independent=True)
    assert second.recognitions[0].embedded
    assert second.recognitions[0].track_id != first.recognitions[0].track_id
    assert not pipe.tracker.tracks
