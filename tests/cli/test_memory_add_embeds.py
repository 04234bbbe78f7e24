"""``rap-edge memory add`` of a person embeds at once: added means recognised everywhere.

Real models and photos (the ``face_models`` fixture); a second photo of the person added is
then named by ``ask``, a photo without a face is refused, one with two faces needs ``--face``
or ``--largest``, and without the models the photos wait, with a note saying how to finish.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = pytest.mark.network


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


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
    """Obama (left) and Biden (right) side by side in one photo."""
    a, b = (np.asarray(cv2.imread(str(photos[n])), np.uint8) for n in ("obama", "biden"))
    h = min(a.shape[0], b.shape[0])
    both = [cv2.resize(x, (round(x.shape[1] * h / x.shape[0]), h)) for x in (a, b)]
    path = tmp_path / "pair.jpg"
    cv2.imwrite(str(path), np.hstack(both))
    return path


def _ask(
    capsys: pytest.CaptureFixture[str], models: Path, mem: str, photo: Path, *extra: str
) -> dict[str, object]:
    code, out, _ = run(
        capsys,
        "ask",
        str(photo),
        "Who is in this photo?",
        "--memory",
        mem,
        "--models",
        str(models),
        "--json",
        *extra,
    )
    assert code == 0
    answer: dict[str, object] = json.loads(out)
    return answer


def _known(answer: dict[str, object]) -> list[str]:
    recs = answer["recognitions"]
    assert isinstance(recs, list)
    return [r["name"] for r in recs if r["decision"] == "known"]


@pytest.mark.slow
def test_newcomer_adds_a_person_and_ask_names_them(
    face_models: Exported,
    llm_model: Path,
    photos: dict[str, Path],
    mem: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = str(face_models.out)
    code, out, err = run(
        capsys,
        "memory",
        "add",
        "Barack",
        "--image",
        str(photos["obama"]),
        "--category",
        "person",
        "--info",
        "the former president",
        "--memory",
        mem,
        "--models",
        models,
    )
    assert code == 0 and "pending" not in out
    assert "embedded 1 face image(s)" in err and "recognise it from now on" in err
    # The newcomer's question, answered by the default model backend.
    answer = _ask(
        capsys,
        face_models.out,
        mem,
        photos["obama3"],
        "--backend",
        "ortgenai",
        "--llm",
        str(llm_model),
    )
    assert _known(answer) == ["Barack"]
    assert "Barack" in str(answer["answer"])


def test_two_faces_need_a_choice_and_the_chosen_face_is_enrolled(
    face_models: Exported,
    photos: dict[str, Path],
    pair: Path,
    mem: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = str(face_models.out)
    add = ["memory", "add", "Joe", "--image", str(pair), "--category", "person", "--memory", mem]
    code, _, err = run(capsys, *add, "--models", models)
    assert code == 1
    assert "shows 2 faces" in err and "--face N" in err and "--largest" in err
    code, _, err = run(capsys, *add, "--models", models, "--face", "3")
    assert code == 1 and "no face 3" in err
    code, out, _ = run(capsys, "memory", "list", "--memory", mem)
    assert out.strip() == "no concepts"  # nothing was added by the refusals
    code, _, err = run(capsys, *add, "--models", models, "--face", "2")  # Biden, on the right
    assert code == 0 and "embedded 1 face image(s)" in err
    assert _known(
        _ask(capsys, face_models.out, mem, photos["biden"], "--backend", "template")
    ) == ["Joe"]
    assert (
        _known(_ask(capsys, face_models.out, mem, photos["obama2"], "--backend", "template")) == []
    )
    # --largest picks Obama (the larger face in this photo).
    code, _, _ = run(
        capsys,
        "memory",
        "add",
        "Barack",
        "--image",
        str(pair),
        "--category",
        "person",
        "--memory",
        mem,
        "--models",
        models,
        "--largest",
    )
    assert code == 0
    answer = _ask(capsys, face_models.out, mem, pair, "--backend", "template")
    assert sorted(_known(answer)) == ["Barack", "Joe"]


def test_a_photo_without_a_face_is_refused(
    face_models: Exported, mem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 90, np.uint8))
    code, _, err = run(
        capsys,
        "memory",
        "add",
        "Nobody",
        "--image",
        str(blank),
        "--category",
        "person",
        "--memory",
        mem,
        "--models",
        str(face_models.out),
    )
    assert code == 1
    assert "no face found in image #1 (wall.png)" in err and len(err.strip().splitlines()) == 1


def test_without_face_models_the_photo_waits_and_the_note_says_how_to_finish(  # noqa: PLR0913, PLR0917
    face_models: Exported,
    photos: dict[str, Path],
    mem: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RAP_EDGE_MODELS", str(tmp_path / "no-store"))
    add = ["memory", "add", "Barack", "--category", "person", "--memory", mem]
    code, _, err = run(capsys, *add, "--image", str(photos["obama"]), "--face", "1")
    assert code == 2 and "need the face models" in err  # a face cannot be chosen unseen
    code, out, err = run(capsys, *add, "--image", str(photos["obama"]))
    assert code == 0 and "1 pending" in out
    assert "face models not loaded" in err and "rap-edge memory embed-faces" in err
    # Any recognising command finishes the job with the models it uses.
    answer = _ask(capsys, face_models.out, mem, photos["obama3"], "--backend", "template")
    assert _known(answer) == ["Barack"]
