"""``rap-edge memory update --add-image`` follows the rule of ``memory add``.

Real models and photos (the ``face_models`` fixture): a photo with several faces needs
``--face N`` or ``--largest`` (nothing changes otherwise), the chosen face is the one embedded
at once, a photo without a face is refused, and without the models the photo waits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.cli import main
from tests.cli.test_memory_add_embeds import _ask, _known, run

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = pytest.mark.network


@pytest.fixture
def photos(face_models: Exported) -> dict[str, Path]:
    return {p.stem: p for p in face_models.photos}


@pytest.fixture
def mem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("RAP_EDGE_THRESHOLDS", raising=False)
    monkeypatch.delenv("RAP_EDGE_BACKEND", raising=False)
    path = tmp_path / "mem"
    assert main(["memory", "init", str(path)]) == 0
    return str(path)


@pytest.fixture
def pair(photos: dict[str, Path], tmp_path: Path) -> Path:
    """Obama (left, the larger face) and Biden (right) side by side in one photo."""
    a, b = (np.asarray(cv2.imread(str(photos[n])), np.uint8) for n in ("obama", "biden"))
    h = min(a.shape[0], b.shape[0])
    both = [cv2.resize(x, (round(x.shape[1] * h / x.shape[0]), h)) for x in (a, b)]
    path = tmp_path / "pair.jpg"
    cv2.imwrite(str(path), np.hstack(both))
    return path


def _images(capsys: pytest.CaptureFixture[str], mem: str, name: str) -> int:
    import json

    code, out, _ = run(capsys, "memory", "show", name, "--memory", mem, "--json")
    assert code == 0
    return len(json.loads(out)["images"])


def test_update_add_image_with_several_faces_needs_a_choice(  # noqa: PLR0913, PLR0917
    face_models: Exported,
    photos: dict[str, Path],
    pair: Path,
    mem: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = str(face_models.out)
    # Joe is added from a photo of Biden alone, then gets a photo with two faces.
    code, _, _ = run(
        capsys,
        "memory",
        "add",
        "Joe",
        "--category",
        "person",
        "--memory",
        mem,
        "--models",
        models,
        "--image",
        str(photos["biden"]),
    )
    assert code == 0
    upd = ["memory", "update", "Joe", "--memory", mem, "--models", models]
    code, _, err = run(capsys, *upd, "--add-image", str(pair))
    assert code == 1
    assert "shows 2 faces" in err and "--face N" in err and "--largest" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, *upd, "--add-image", str(pair), "--face", "3")
    assert code == 1 and "no face 3" in err
    with pytest.raises(SystemExit):  # argparse refuses both at once
        main([*upd, "--add-image", str(pair), "--face", "1", "--largest"])
    code, _, err = run(capsys, *upd, "--face", "1")
    assert code == 1 and "--add-image" in err
    assert _images(capsys, mem, "Joe") == 1  # the refusals changed nothing
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 90, np.uint8))
    code, _, err = run(capsys, *upd, "--add-image", str(blank))
    assert code == 1 and "no face found in image #1 (wall.png)" in err
    assert _images(capsys, mem, "Joe") == 1

    # --face 2 picks Biden (on the right): embedded at once, and only his face.
    code, _, err = run(capsys, *upd, "--add-image", str(pair), "--face", "2", "--info", "x")
    assert code == 0 and "embedded 1 new face image(s)" in err
    assert _images(capsys, mem, "Joe") == 2
    answer = _ask(capsys, face_models.out, mem, pair, "--backend", "template")
    assert _known(answer) == ["Joe"]  # Obama, beside him in the added photo, is not Joe


def test_update_largest_enrols_the_larger_face(
    face_models: Exported,
    photos: dict[str, Path],
    pair: Path,
    mem: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = str(face_models.out)
    code, _, _ = run(
        capsys,
        "memory",
        "add",
        "Barack",
        "--category",
        "person",
        "--memory",
        mem,
        "--models",
        models,
        "--image",
        str(photos["obama"]),
    )
    assert code == 0
    code, _, err = run(
        capsys,
        "memory",
        "update",
        "Barack",
        "--memory",
        mem,
        "--models",
        models,
        "--add-image",
        str(pair),
        "--largest",
    )
    assert code == 0 and "embedded 1 new face image(s)" in err
    answer = _ask(capsys, face_models.out, mem, pair, "--backend", "template")
    assert _known(answer) == ["Barack"]  # Biden, the smaller face, was not enrolled


def test_update_without_face_models_waits_and_refuses_a_choice(
    photos: dict[str, Path],
    mem: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RAP_EDGE_MODELS", str(tmp_path / "no-store"))
    add = ["memory", "add", "Barack", "--category", "person", "--memory", mem]
    assert run(capsys, *add, "--image", str(photos["obama"]))[0] == 0
    upd = ["memory", "update", "Barack", "--memory", mem, "--add-image", str(photos["obama2"])]
    code, _, err = run(capsys, *upd, "--largest")
    assert code == 2 and "need the face models" in err
    code, out, err = run(capsys, *upd)
    assert code == 0 and "2 pending" in out
    assert "rap-edge memory embed-faces" in err
