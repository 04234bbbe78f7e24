"""The object path in the pipeline with the real MobileNetV2 weights, on real photos.

No object detector ships in any registry package, so this runs the detector-free path:
multi-scale proposal windows matched with the object embedder. The "object" is a printed
photo (a square poster cut from biden.jpg) enrolled from the picture itself and found in a frame
where it hangs smaller and shifted (measured: best window cosine 0.84-0.89 over three placements,
threshold 0.8; a tall narrow poster is missed, best 0.79, because the windows are square).
MobileNetV2 matches instances, so this is the kind of match it makes (a particular mug, poster
or toy), not a category.
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
    ObjectModels,
    Pipeline,
    PipelineConfig,
    embed_faces_in_memory,
    embed_objects_in_memory,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = pytest.mark.network


def test_posters_and_people_in_one_frame(
    face_models: Exported, object_model: Path, tmp_path: Path
) -> None:
    faces = FaceModels.load(face_models.out, provider="cpu")
    objects = ObjectModels.load(object_model, provider="cpu")
    photo = cv2.imread(str(next(p for p in face_models.photos if p.name == "biden.jpg")))
    square = photo[: photo.shape[1]]
    poster = tmp_path / "poster.png"
    cv2.imwrite(str(poster), square)
    mem = Memory.init(tmp_path / "mem")
    mem.add("Hall poster", images=[poster], category="poster")
    mem.add(
        "Barack",
        images=[next(p for p in face_models.photos if p.name == "obama.jpg")],
        category="person",
    )
    assert embed_objects_in_memory(mem, objects.encoder) == 1  # the person is not an object
    assert embed_faces_in_memory(mem, FaceEmbedder(faces)) == 1  # the poster is not a face
    canvas = np.full((480, 640, 3), 200, np.uint8)
    small = cv2.resize(square, (260, 260), interpolation=cv2.INTER_AREA)
    canvas[100:360, 300:560] = small
    pipe = Pipeline(faces, mem, objects=objects, config=PipelineConfig(object_every=3))
    res = pipe.process(canvas)
    objs = [r for r in res.recognitions if r.kind == "object"]
    assert [(r.decision, r.name) for r in objs] == [("known", "Hall poster")]
    box = objs[0].box
    assert box[0] < 300 + small.shape[1] / 2 < box[2]  # the best window covers the poster
    # A face on the poster is a face recognition of its own; Biden is not enrolled.
    assert all(r.decision != "known" for r in res.recognitions if r.kind == "face")
    assert "objects" in res.timings_ms
    again = pipe.process(canvas)  # between object passes the last result is repeated
    assert [r.name for r in again.recognitions if r.kind == "object"] == ["Hall poster"]
    assert not next(r for r in again.recognitions if r.kind == "object").embedded
    empty = pipe.process(np.full((480, 640, 3), 200, np.uint8), index=3)
    assert [r for r in empty.recognitions if r.kind == "object"] == []
