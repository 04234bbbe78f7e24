"""Shared fixtures: tiny synthetic images and fresh memories.

The images are random pixel blocks made here, not photos: they exercise storage and decoding,
not recognition quality.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.memory import Memory

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


def png_bytes(seed: int, size: int = 16) -> bytes:
    """A small PNG whose pixels are determined by ``seed`` (distinct seeds, distinct files)."""
    rng = np.random.default_rng(seed)
    ok, buf = cv2.imencode(".png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    """Write a PNG for ``seed`` into tmp_path and return its path."""

    def make(seed: int, name: str | None = None, size: int = 16) -> Path:
        path = tmp_path / "src" / (name or f"img{seed}.png")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(png_bytes(seed, size))
        return path

    return make


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    with Memory.init(tmp_path / "mem") as mem:
        yield mem


def unit(rng: np.random.Generator, dim: int, n: int = 1) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
