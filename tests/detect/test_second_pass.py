"""Second detector passes on real photos: a close-up, a face tilted by 45 degrees, a 20 px face.

The real check photos and models; Obama is enrolled from ``obama.jpg`` and looked for in his
other photos, Biden (never enrolled) must stay unknown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.memory import Memory
from rap_edge.pipeline import (
    FaceEmbedder,
    FaceModels,
    Pipeline,
    PipelineConfig,
    embed_faces_in_memory,
)
from rap_edge.pipeline._faces import largest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def models(face_models: Exported) -> FaceModels:
    return FaceModels.load(face_models.out, provider="cpu")


@pytest.fixture(scope="module")
def pipe(
    face_models: Exported, models: FaceModels, tmp_path_factory: pytest.TempPathFactory
) -> Pipeline:
    mem = Memory.init(tmp_path_factory.mktemp("mem") / "m")
    obama = next(p for p in face_models.photos if p.name == "obama.jpg")
    mem.add("Barack", images=[obama], category="person")
    assert embed_faces_in_memory(mem, FaceEmbedder(models)) == 1
    return Pipeline(models, mem)


def _photo(face_models: Exported, stem: str) -> np.ndarray:
    path = next(p for p in face_models.photos if p.stem == stem)
    return np.asarray(cv2.imread(str(path)), np.uint8)


def _box(models: FaceModels, image: np.ndarray) -> tuple[float, float, float, float]:
    face = largest(models.detect(image))
    assert face is not None
    return face.x1, face.y1, face.x2, face.y2


def _names(pipe: Pipeline, image: np.ndarray) -> list[tuple[str, str | None]]:
    res = pipe.process(image, independent=True)
    return [(r.decision, r.name) for r in res.recognitions]


def closeup(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    rows: tuple[float, float] = (0.15, 0.85),
) -> np.ndarray:
    """The face's middle rows (default 70 %: forehead and chin cut off), 480 px high."""
    return _closeup_and_map(image, box, rows)[0]


def _closeup_and_map(
    image: np.ndarray, box: tuple[float, float, float, float], rows: tuple[float, float]
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The close-up and how photo pixels map into it: (x0, y0, scale)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    x0, y0 = max(0, int(x1 - 0.08 * w)), int(y1 + rows[0] * h)
    crop = image[y0 : int(y1 + rows[1] * h), x0 : int(x2 + 0.08 * w)]
    scale = 480 / crop.shape[0]
    size = (round(crop.shape[1] * scale), 480)
    return np.asarray(cv2.resize(crop, size), np.uint8), (x0, y0, scale)


@pytest.mark.parametrize("stem", ["obama2", "obama3"])
def test_a_face_that_overflows_the_frame_is_found_and_named(
    face_models: Exported, models: FaceModels, pipe: Pipeline, stem: str
) -> None:
    photo = _photo(face_models, stem)
    image = closeup(photo, _box(models, photo))
    assert models.detect(image) == []  # the SSD alone finds nothing
    runs = models.fallback_runs
    assert _names(pipe, image) == [("known", "Barack")]
    assert models.fallback_runs == runs + 1


@pytest.mark.parametrize(("stem", "rows"), [("biden", (0.1, 0.9)), ("obama3", (0.2, 0.8))])
def test_a_closeups_shifted_first_pass_box_gives_way_to_the_padded_pass(
    face_models: Exported, models: FaceModels, pipe: Pipeline, stem: str, rows: tuple[float, float]
) -> None:
    """On these close-ups the SSD's only box is a phantom shifted by half a face, mostly
    outside the frame, that its own chip confirms. Landmarks from it cut a chip that no one
    can be named from; the padded pass's box must win, landmarks where the photo has them.
    """
    photo = _photo(face_models, stem)
    face = largest(models.detect(photo))
    assert face is not None
    image, (x0, y0, scale) = _closeup_and_map(photo, face.box, rows)
    inside, outside = models.detect_upright(image)
    assert inside == []
    assert len(outside) == 1
    assert models.verify(image, outside)  # the phantom alone would have been kept
    (found,) = models.detect(image, fallback=True)
    expected = (models.landmarks_for_detections(photo, [face])[0] - [x0, y0]) * scale
    got = models.landmarks_for_detections(image, [found])[0]
    eyes = float(np.linalg.norm(expected[0] - expected[2]))
    assert float(np.linalg.norm(got - expected, axis=1).mean()) < 0.05 * eyes
    expect = [("unknown", None)] if stem == "biden" else [("known", "Barack")]
    assert _names(pipe, image) == expect


def test_a_strangers_closeup_stays_unknown_and_a_blank_frame_gets_no_phantom(
    face_models: Exported, models: FaceModels, pipe: Pipeline
) -> None:
    photo = _photo(face_models, "biden")
    assert _names(pipe, closeup(photo, _box(models, photo))) == [("unknown", None)]
    for blank in (np.zeros((480, 640, 3), np.uint8), np.full((1, 1, 3), 200, np.uint8)):
        assert _names(pipe, blank) == []


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """The photo rotated on an expanded canvas (nothing cut), grey corners."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos), int(h * cos + w * sin)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return np.asarray(cv2.warpAffine(image, m, (nw, nh), borderValue=(90, 90, 90)), np.uint8)


@pytest.mark.parametrize("degrees", [45.0, -45.0])
@pytest.mark.parametrize("stem", ["obama2", "obama3"])
def test_a_face_tilted_by_45_degrees_is_named(
    face_models: Exported, pipe: Pipeline, stem: str, degrees: float
) -> None:
    assert _names(pipe, rotate(_photo(face_models, stem), degrees)) == [("known", "Barack")]


def test_the_rotated_pass_finds_tilted_faces_the_upright_pass_misses(
    face_models: Exported, models: FaceModels
) -> None:
    """On a 60 % crop around the face (no context to help the upright SSD) at 45 degrees."""
    photo = _photo(face_models, "obama2")
    x1, y1, x2, y2 = _box(models, photo)
    w, h = x2 - x1, y2 - y1
    crop = photo[max(0, int(y1 - h)) : int(y2 + h), max(0, int(x1 - w)) : int(x2 + w)]
    tilted = rotate(crop, 45.0)
    found = models.detect(tilted, fallback=True)
    assert len(found) == 1
    if not models.detect(tilted):  # found by the rotated pass: it carries the angle
        assert found[0].angle == 45.0


@pytest.mark.parametrize("stem", ["obama2", "obama3"])
def test_a_20_px_face_in_a_640x480_frame_is_named(
    face_models: Exported, models: FaceModels, pipe: Pipeline, stem: str
) -> None:
    photo = _photo(face_models, stem)
    x1, _, x2, _ = _box(models, photo)
    s = 20 / (x2 - x1)
    size = (round(photo.shape[1] * s), round(photo.shape[0] * s))
    small = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[200 : 200 + small.shape[0], 300 : 300 + small.shape[1]] = small[:280, :340]
    assert models.detect(frame) == []  # too small for the whole-frame pass
    res = pipe.process(frame, independent=True)
    assert [(r.decision, r.name) for r in res.recognitions] == [("known", "Barack")]
    (rec,) = res.recognitions
    assert 16 <= rec.box[2] - rec.box[0] <= 26


def _scaled_face(models: FaceModels, photo: np.ndarray, px: int) -> np.ndarray:
    """``photo`` scaled so its face is ``px`` wide."""
    x1, _, x2, _ = _box(models, photo)
    s = px / (x2 - x1)
    return np.asarray(cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), np.uint8)


def test_a_far_face_beside_a_near_one_in_a_large_photo_is_named_without_flags(
    face_models: Exported, models: FaceModels, pipe: Pipeline
) -> None:
    """1920x1080: Biden fills the frame (the whole-frame pass finds him, so no second pass
    runs); Obama's face is 32 px wide, too small for that pass at this size."""
    frame = np.ascontiguousarray(cv2.resize(_photo(face_models, "biden"), (1920, 1080)))
    small = _scaled_face(models, _photo(face_models, "obama2"), 32)
    frame[600 : 600 + small.shape[0], 1500 : 1500 + small.shape[1]] = small[:480, :420]
    assert ("known", "Barack") in _names(pipe, frame)
    untiled = Pipeline(models, pipe.memory, config=PipelineConfig(auto_tiles=False))
    res = untiled.process(frame, independent=True)
    assert [r.name for r in res.recognitions] == [None]  # Biden only


def test_a_small_faces_lost_track_is_found_again_by_tiling_the_next_frame(
    face_models: Exported, models: FaceModels, pipe: Pipeline
) -> None:
    """A stream: a 22 px Obama alone (found by the second passes), then Biden steps in (the
    whole-frame pass finds him, so no second pass runs and Obama's track is missed), then
    the next frame where second passes may run (every 3rd) is tiled because a small track is
    missing, and Obama is back on it."""
    small = _scaled_face(models, _photo(face_models, "obama2"), 22)
    alone = np.full((480, 640, 3), 90, np.uint8)
    alone[250 : 250 + small.shape[0], 420 : 420 + small.shape[1]] = small[:230, :220]
    near = _scaled_face(models, _photo(face_models, "biden"), 150)[:400, :380]
    both = alone.copy()
    both[20 : 20 + near.shape[0], 10 : 10 + near.shape[1]] = near

    def names(p: Pipeline, frame: np.ndarray) -> dict[str | None, int]:
        return {r.name: r.track_id for r in p.process(frame).recognitions}

    for auto in (True, False):
        # scene_cut 0: Biden stepping into a flat grey frame would otherwise count as a cut.
        config = PipelineConfig(auto_tiles=auto, scene_cut=0.0)
        stream = Pipeline(models, pipe.memory, config=config)
        first = names(stream, alone)
        assert list(first) == ["Barack"]
        assert "Barack" not in names(stream, both)  # frame 1: the whole-frame pass alone
        assert "Barack" not in names(stream, both)  # frame 2: no second passes (every 3rd)
        again = names(stream, both)  # frame 3
        if auto:
            assert again.get("Barack") == first["Barack"]
            assert stream.small_track_tiles >= 1
        else:
            assert "Barack" not in again


@pytest.fixture(scope="module")
def far_set(photo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The labelled set's identity photos and its ``far`` copies (built from PyPI sdists)."""
    from calibration import labelled

    out = tmp_path_factory.mktemp("labelled") / "set"
    labelled.build(out, cache=photo_cache, conditions=["far"], seed=0)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("identity", "photo"),
    [("elton_john", "elton_john_05.jpg"), ("john_savage", "john_savage_02.jpg")],
)
def test_a_far_face_the_300px_tiles_miss_is_found_by_finer_tiles_and_named(
    models: FaceModels,
    far_set: Path,
    tmp_path: Path,
    identity: str,
    photo: str,
) -> None:
    """Real far photos (faces 16-25 px in 640x480, on the set's smooth backgrounds) where the
    whole frame, the padded and rotated views and the 3x3 tiles find nothing."""
    frame = np.asarray(cv2.imread(str(far_set / "conditions" / "far" / identity / photo)))
    mem = Memory.init(tmp_path / "m")
    mem.add(identity, images=[far_set / identity / f"{identity}_00.jpg"], category="person")
    assert embed_faces_in_memory(mem, FaceEmbedder(models)) == 1
    before = models.dense_runs
    res = Pipeline(models, mem).process(frame, independent=True)
    assert models.dense_runs == before + 1
    assert [(r.decision, r.name) for r in res.recognitions] == [("known", identity)]
    (rec,) = res.recognitions
    assert rec.box[2] - rec.box[0] <= 30


def test_an_8k_frame_is_tiled_within_bounds_and_its_face_named(
    face_models: Exported, models: FaceModels, pipe: Pipeline
) -> None:
    """7680x4320: the tiled pass stops at 4x4 tiles (the finer last pass at 5x5); a 240 px
    face is named, a black 8K frame gives nothing, both as a photo and as a stream frame."""
    frame = np.zeros((4320, 7680, 3), np.uint8)
    face = _scaled_face(models, _photo(face_models, "obama2"), 240)[:1200, :1200]
    frame[2000 : 2000 + face.shape[0], 5000 : 5000 + face.shape[1]] = face
    assert _names(pipe, frame) == [("known", "Barack")]
    stream = Pipeline(models, pipe.memory)
    assert [r.name for r in stream.process(frame).recognitions] == ["Barack"]
    black = np.zeros_like(frame)
    assert _names(pipe, black) == []
    assert stream.process(black).recognitions == []


def test_an_empty_stream_backs_off_its_second_passes_and_a_face_resets_them(
    face_models: Exported, models: FaceModels, pipe: Pipeline
) -> None:
    """Every 3rd frame while faces come and go; on an empty scene the gap doubles (3, 6,
    12, 24, then 30 frames), and drops back to 3 once a face is in view. Stream frames skip
    the finer last tiles (a photo of the same empty scene runs them)."""
    stream = Pipeline(models, pipe.memory, config=PipelineConfig(scene_cut=0.0))
    finer = models.dense_runs
    empty = np.full((240, 320, 3), 90, np.uint8)
    face = np.full((240, 320, 3), 90, np.uint8)
    small = _scaled_face(models, _photo(face_models, "obama2"), 60)[:200, :200]
    face[20 : 20 + small.shape[0], 60 : 60 + small.shape[1]] = small

    def run(frames: list[np.ndarray]) -> list[int]:
        ran = []
        for f in frames:
            before = models.fallback_runs
            res = stream.process(f)
            if models.fallback_runs > before:
                ran.append(res.index)
        return ran

    assert run([empty] * 50) == [0, 3, 9, 21, 45]
    assert run([face]) == []  # frame 50: the first pass finds him; no second pass needed
    assert run([empty] * 10) == [53, 56]  # back to every 3rd frame, then doubling again
    assert models.dense_runs == finer
    assert stream.process(empty, independent=True).recognitions == []
    assert models.dense_runs == finer + 1
