"""Fixtures of the web app tests: a real session over the exported face models and a memory.

Every test here needs the ``web`` extra (FastAPI, httpx); the ones with photos need the
exported models (``face_models``, network-marked).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from rap_edge.app import Session, Settings
from rap_edge.memory import Memory
from rap_edge.web import Sightings, WebConfig, WebState, create_app

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

    from tests.conftest import Exported


class Web:
    """A running app: its state, config, client and the photos by name."""

    def __init__(
        self, state: WebState, config: WebConfig, client: TestClient, photos: dict[str, Path]
    ) -> None:
        self.state = state
        self.config = config
        self.client = client
        self.photos = photos
        self.memory = config.memory

    def upload(self, name: str) -> tuple[str, bytes, str]:
        """A multipart file tuple for the photo ``name``."""
        return (name, self.photos[name].read_bytes(), "image/jpeg")


def open_web(
    tmp_path: Path,
    face_models: Exported,
    *,
    auth: bool = False,
    **config: Any,
) -> tuple[Session, WebState, WebConfig]:
    """A session, its live state and a config over a new memory in ``tmp_path``."""
    Memory.init(tmp_path / "mem").close()
    settings = Settings(
        memory=tmp_path / "mem", models=face_models.out, provider="cpu", backend="template"
    )
    session = Session.open(settings, memory="required")
    assert session.memory is not None
    clusters = session.strangers()  # as `rap-edge serve` opens them
    sightings = Sightings(session.memory.path)
    state = WebState(session, clusters=clusters, sightings=sightings)
    cfg = WebConfig(memory=session.memory.path, auth=auth, **config)
    return session, state, cfg


@pytest.fixture
def web(tmp_path: Path, face_models: Exported) -> Iterator[Web]:
    """The app over a fresh memory, bound to this machine (no password)."""
    from fastapi.testclient import TestClient

    session, state, cfg = open_web(tmp_path, face_models, max_upload_bytes=2_000_000)
    photos = {p.name: p for p in face_models.photos}
    try:
        with TestClient(create_app(state, cfg)) as client:
            yield Web(state, cfg, client, photos)
    finally:
        state.close()
        session.close()


def photo_folder(tmp_path: Path, photos: dict[str, Path], names: list[str]) -> Path:
    """A folder holding copies of the named photos (an image-folder source)."""
    folder = tmp_path / "camera"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(photos[name], folder / name)
    return folder


def side_by_side(a: Path, b: Path) -> bytes:
    """One JPEG showing two photos next to each other (two faces)."""
    left, right = cv2.imread(str(a)), cv2.imread(str(b))
    h = min(left.shape[0], right.shape[0])
    left = cv2.resize(left, (left.shape[1] * h // left.shape[0], h))
    right = cv2.resize(right, (right.shape[1] * h // right.shape[0], h))
    ok, buf = cv2.imencode(".jpg", np.hstack([left, right]))
    assert ok
    return bytes(buf.tobytes())
