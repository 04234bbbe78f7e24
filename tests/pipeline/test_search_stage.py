"""The pipeline's search stage: k concepts asked for, more only when the category filter bites.

Hand-made vectors under a fake encoder id: no models involved.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest

from rap_edge.memory import Memory
from rap_edge.pipeline import Pipeline, PipelineConfig

if TYPE_CHECKING:
    from pathlib import Path

ENC = "fake-face-encoder"
DIM = 16


def _faces() -> Any:
    """Just what Pipeline needs of FaceModels to search: the encoder id and its threshold."""
    return SimpleNamespace(
        encoder_id=ENC, encoder=SimpleNamespace(manifest=SimpleNamespace(threshold=0.5))
    )


_made = iter(range(1, 1 << 20))


def _add(mem: Memory, name: str, category: str, vector: np.ndarray) -> None:
    """A concept with one small distinct image (the memory's smallest) and its vector."""
    i = next(_made)
    img = np.full((16, 16, 3), i % 251, np.uint8)
    img[0, :3] = [(i >> 16) & 255, (i >> 8) & 255, i & 255]
    png = cv2.imencode(".png", img)[1].tobytes()
    mem.add(name, images=[png], category=category, vectors=vector[None], encoder=ENC)


def _near(base: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at cosine ``cos`` to unit ``base``."""
    noise = rng.standard_normal(DIM)
    noise -= (noise @ base) * base
    noise /= np.linalg.norm(noise)
    return (cos * base + np.sqrt(1 - cos**2) * noise).astype(np.float32)


@pytest.fixture
def query() -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[0] = 1.0
    return v


@pytest.fixture
def memory(tmp_path: Path, query: np.ndarray) -> Memory:
    """Five person concepts at falling similarity to ``query``, plus noise concepts."""
    rng = np.random.default_rng(0)
    mem = Memory.init(tmp_path / "m")
    for i, cos in enumerate((0.95, 0.9, 0.85, 0.8, 0.75)):
        _add(mem, f"p{i}", "person", _near(query, cos, rng))
    for i in range(20):
        _add(mem, f"far{i}", "person", _near(query, 0.1, rng))
    return mem


class _Spy:
    """Records the ``k`` of every Memory.search call."""

    def __init__(self, mem: Memory) -> None:
        self.mem = mem
        self.ks: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.mem, name)

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self.ks.append(kwargs["k"])
        return self.mem.search(*args, **kwargs)


def test_asks_for_k_when_every_hit_is_a_face(memory: Memory, query: np.ndarray) -> None:
    spy = _Spy(memory)
    pipe = Pipeline(_faces(), spy, config=PipelineConfig(k=3))  # type: ignore[arg-type]
    found = pipe._search([query, None, query])
    assert [[c.name for c in row] for row in found] == [["p0", "p1", "p2"], [], ["p0", "p1", "p2"]]
    assert spy.ks == [3]  # one batched search, no oversampling


def test_other_categories_among_the_nearest_still_leave_k_faces(
    memory: Memory, query: np.ndarray
) -> None:
    # Face vectors under a non-face category (e.g. a concept re-categorised after embedding):
    # nearer than every person, and filtered out of the face candidates.
    rng = np.random.default_rng(1)
    for i, cos in enumerate((0.99, 0.98, 0.97)):
        _add(memory, f"poster{i}", "poster", _near(query, cos, rng))
    spy = _Spy(memory)
    pipe = Pipeline(_faces(), spy, config=PipelineConfig(k=3))  # type: ignore[arg-type]
    found = pipe._search([query])
    assert [c.name for c in found[0]] == ["p0", "p1", "p2"]
    assert [c.category for c in found[0]] == ["person"] * 3
    scores = [c.score for c in found[0]]
    assert scores == sorted(scores, reverse=True)
    assert spy.ks == [3, 3 * 4 + 8]  # asked again, as widely as before


def test_a_small_memory_is_not_asked_twice(tmp_path: Path, query: np.ndarray) -> None:
    mem = Memory.init(tmp_path / "small")
    _add(mem, "p", "person", query)
    _add(mem, "mug", "mug", query * 0.9)
    spy = _Spy(mem)
    pipe = Pipeline(_faces(), spy, config=PipelineConfig(k=3))  # type: ignore[arg-type]
    assert [c.name for c in pipe._search([query])[0]] == ["p"]
    assert spy.ks == [3]  # two hits for k=3: nothing more to find


def test_live_edits_show_in_the_next_search(memory: Memory, query: np.ndarray) -> None:
    pipe = Pipeline(_faces(), memory, config=PipelineConfig(k=3))  # type: ignore[arg-type]
    assert pipe._search([query])[0][0].name == "p0"
    _add(memory, "new", "person", query)
    assert pipe._search([query])[0][0].name == "new"
    memory.remove("new")
    assert pipe._search([query])[0][0].name == "p0"
