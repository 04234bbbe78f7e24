"""rap_edge.embed: pending reference images to vectors; a bad image is skipped, not fatal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.embed import EmbedReport, SkippedImage, embed_images, embed_pending
from rap_edge.errors import InvalidInputError, StoreError
from tests.conftest import png_bytes

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from rap_edge.memory import Memory
    from tests.conftest import Exported


@pytest.fixture(autouse=True)
def _older_memories(monkeypatch: pytest.MonkeyPatch) -> None:
    """Store images under the memory's minimum size, as memories made before it hold them."""
    monkeypatch.setattr("rap_edge.memory._validate.MIN_IMAGE_SIDE", 1)


class ShapeEmbedder:
    """Mean colour of an image; refuses images smaller than 4x4, like a face path with no box."""

    dim = 3

    def __init__(self, encoder_id: str = "test/shape") -> None:
        self.encoder_id = encoder_id
        self.calls = 0

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.calls += 1
        for img in images:
            if min(img.shape[:2]) < 4:
                msg = "box must be 4 finite numbers x1 < x2, y1 < y2, got [0, 0, 0, 0]"
                raise InvalidInputError(msg)
        return np.stack([img.reshape(-1, 3).mean(axis=0) + 1.0 for img in images]).astype(
            np.float32
        )


class NanEmbedder(ShapeEmbedder):
    """Returns a NaN vector for images of 8x8 pixels."""

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = super().embed(images)
        for i, img in enumerate(images):
            if img.shape[0] == 8:
                out[i] = np.nan
        return out


def _concepts(memory: Memory) -> None:
    memory.add("Ann", images=[png_bytes(1), png_bytes(2)], category="person")
    memory.add("Tiny", images=[png_bytes(3, size=1)], category="person")
    memory.add("Bob", images=[png_bytes(4)], category="person")
    memory.add("mug", images=[png_bytes(5)], category="cup")


def test_an_image_that_cannot_be_embedded_is_skipped_and_the_others_are_embedded(
    memory: Memory,
) -> None:
    _concepts(memory)
    faces, things = ShapeEmbedder("test/faces"), ShapeEmbedder("test/objects")
    report = embed_pending(memory, faces=faces, objects=things)
    assert isinstance(report, EmbedReport)
    assert (report.faces, report.objects, report.embedded) == (3, 1, 4)
    tiny = memory.get("Tiny").images[0]
    assert report.skipped == (
        SkippedImage(
            concept="Tiny",
            image_id=tiny.id,
            path=tiny.path,
            reason="box must be 4 finite numbers x1 < x2, y1 < y2, got [0, 0, 0, 0]",
        ),
    )
    assert [r.id for r in memory.pending("test/faces")] == [
        tiny.id,
        memory.get("mug").images[0].id,
    ]
    assert [memory.get(r.concept_id).name for r in memory.pending("test/objects")] == [
        "Ann",
        "Ann",
        "Tiny",
        "Bob",
    ]
    # Nothing more to do, and the skipped image is tried (and reported) again.
    again = embed_pending(memory, faces=faces, objects=things)
    assert (again.faces, again.objects) == (0, 0)
    assert [s.image_id for s in again.skipped] == [tiny.id]
    assert memory.verify().ok


def test_without_embedders_nothing_happens(memory: Memory) -> None:
    _concepts(memory)
    assert embed_pending(memory) == EmbedReport()
    assert len(memory.pending()) == 5


def test_non_finite_vectors_and_missing_files_are_skipped(memory: Memory) -> None:
    memory.add("a", images=[png_bytes(1), png_bytes(2, size=8)])
    memory.add("b", images=[png_bytes(3)])
    gone = memory.get("b").images[0]
    gone.path.unlink()
    embedder = NanEmbedder()
    done, skipped = embed_images(memory, embedder, skip_failures=True, progress=False)
    assert done == 1
    assert [(s.concept, s.image_id) for s in skipped] == [
        ("b", gone.id),
        ("a", memory.get("a").images[1].id),
    ]
    assert "missing or corrupt" in skipped[0].reason
    assert "NaN, infinite or zero" in skipped[1].reason
    assert len(memory.pending(embedder.encoder_id)) == 2


def test_the_strict_paths_still_stop_at_the_first_bad_image(memory: Memory) -> None:
    memory.add("Tiny", images=[png_bytes(3, size=1)], category="person")
    with pytest.raises(InvalidInputError, match="box must be"):
        memory.embed_pending(ShapeEmbedder())
    memory.remove("Tiny")
    memory.add("b", images=[png_bytes(4)])
    memory.get("b").images[0].path.unlink()
    with pytest.raises(StoreError, match="missing or corrupt"):
        memory.embed_pending(ShapeEmbedder())
    with pytest.raises(InvalidInputError, match="batch_size"):
        embed_images(memory, ShapeEmbedder(), batch_size=0)


def test_a_failing_batch_is_retried_one_image_at_a_time(memory: Memory) -> None:
    memory.add("a", images=[png_bytes(1), png_bytes(2, size=2), png_bytes(3)])
    embedder = ShapeEmbedder()
    done, skipped = embed_images(memory, embedder, batch_size=3, skip_failures=True)
    assert (done, len(skipped), embedder.calls) == (2, 1, 4)
    assert memory.active_encoder == embedder.encoder_id


@pytest.mark.network
def test_a_one_pixel_person_is_skipped_with_the_real_face_models(
    tmp_path: Path, face_models: Exported
) -> None:
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FaceEmbedder, FaceModels

    models = FaceModels.load(face_models.out, provider="cpu")
    obama = next(p for p in face_models.photos if p.name == "obama.jpg")
    with Memory.init(tmp_path / "mem") as mem:
        mem.add("Barack", images=[obama], category="person")
        mem.add("Dot", images=[png_bytes(7, size=1)], category="person")
        report = embed_pending(mem, faces=FaceEmbedder(models))
        assert report.faces == 1
        assert [(s.concept, s.image_id) for s in report.skipped] == [
            ("Dot", mem.get("Dot").images[0].id)
        ]
        assert [mem.get(r.concept_id).name for r in mem.pending(models.encoder_id)] == ["Dot"]
