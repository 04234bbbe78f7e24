"""``rap-edge memory add`` / ``update`` of an object or pet stores the detected object (issue 17).

Real exported NanoDet and MobileNetV2 from the default model store (skipped with the reason
when ``make models`` did not build them) and scikit-image's sample photos (see
tests/app/test_object_enrollment.py): Chelsea the cat pasted into the rocket scene is stored
as the crop of the cat and embedded at once; the coffee photo has no cat and is refused as a
cat's photo unless ``--whole-image``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import cv2
import pytest

from rap_edge.cli import main
from tests.app.test_object_enrollment import Scenes, real_object_store

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.network


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def store() -> tuple[Path, Path]:
    return real_object_store()


@pytest.fixture
def files(store: tuple[Path, Path], tmp_path: Path) -> dict[str, Path]:
    scenes = Scenes(store[1])
    launch = tmp_path / "cat-at-launch.png"
    cv2.imwrite(str(launch), scenes.cat_at_launch)
    return {"launch": launch, "coffee": store[1] / "coffee.png"}


@pytest.fixture
def mem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("RAP_EDGE_THRESHOLDS", raising=False)
    path = tmp_path / "mem"
    assert main(["memory", "init", str(path)]) == 0
    return str(path)


def _sizes(capsys: pytest.CaptureFixture[str], mem: str, ref: str) -> list[tuple[int, int]]:
    code, out, _ = run(capsys, "memory", "show", ref, "--memory", mem, "--json")
    assert code == 0
    return [(img["width"], img["height"]) for img in json.loads(out)["images"]]


def test_memory_add_stores_the_cat_and_refuses_a_photo_without_one(
    store: tuple[Path, Path], files: dict[str, Path], mem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    models = str(store[0])
    common = ["--category", "cat", "--memory", mem, "--models", models, "--provider", "cpu"]
    code, out, err = run(
        capsys, "memory", "add", "Chelsea", "--image", str(files["launch"]), *common
    )
    assert code == 0, err
    assert "pending" not in out
    assert "embedded 1 object image(s) with mobilenetv2" in err
    assert "each cropped to the largest cat found in it" in err
    ((w, h),) = _sizes(capsys, mem, "Chelsea")
    assert w == h and 250 < w < 427  # the cat's square crop, not the 640x427 scene

    code, _, err = run(capsys, "memory", "add", "Rex", "--image", str(files["coffee"]), *common)
    assert code == 1
    assert err == (
        "rap-edge: error: 'Rex': no cat found in image #1 (coffee.png) for category 'cat'; "
        "use a photo where it is visible, or --whole-image to enrol the whole photo (nothing "
        "was changed)\n"
    )
    assert run(capsys, "memory", "show", "Rex", "--memory", mem)[0] == 1
    add = ["memory", "add", "Rex", "--image", str(files["coffee"]), "--whole-image", *common]
    code, out, err = run(capsys, *add)
    assert code == 0, err
    assert "1 pending" in out  # kept whole, embedded by `embed-objects` or `run --objects`
    assert _sizes(capsys, mem, "Rex") == [(600, 400)]


def test_memory_update_crops_added_photos_unless_whole_image(
    store: tuple[Path, Path], files: dict[str, Path], mem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    models = ["--models", str(store[0]), "--provider", "cpu"]
    add = ["memory", "add", "Chelsea", "--image", str(files["launch"]), "--category", "pet"]
    assert run(capsys, *add, "--memory", mem, *models)[0] == 0
    update = ["memory", "update", "Chelsea", "--memory", mem, *models]
    code, _, err = run(capsys, *update, "--add-image", str(files["coffee"]))
    assert code == 1
    assert "no cat or dog found in image #1 (coffee.png) for category 'pet'" in err
    assert len(_sizes(capsys, mem, "Chelsea")) == 1
    code, _, err = run(capsys, *update, "--add-image", str(files["launch"]), "--info", "grey")
    assert code == 1  # the same file again: the crop is the same image
    assert "already" in err
    code, _, err = run(capsys, *update, "--add-image", str(files["coffee"]), "--whole-image")
    assert code == 0, err
    assert _sizes(capsys, mem, "Chelsea")[1] == (600, 400)


def test_whole_image_flag_mistakes_exit_1_with_one_line(
    mem: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in (
        (
            ["memory", "add", "Ana", "--image", str(files["coffee"]), "--category", "person"],
            "--whole-image keeps an object's or pet's whole photo",
        ),
        (["memory", "update", "Ana"], "--whole-image keeps the whole of a photo given with"),
    ):
        code, _, err = run(capsys, *argv, "--whole-image", "--memory", mem)
        assert code == 1
        assert err.count("\n") == 1 and message in err
    with pytest.raises(SystemExit):
        main(["memory", "add", "--help"])
    assert "--whole-image" in capsys.readouterr().out
