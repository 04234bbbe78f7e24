"""Hostile or unlucky files given to the CLI (issue 14): images too small to hold a face,
decompression bombs, FIFOs and devices. Each is refused with one line naming the file, and
without decoding or blocking; a stream keeps running."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.cli import main
from tests.sources.test_header import png_bomb

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported


@pytest.fixture
def mem(tmp_path: Path) -> str:
    path = str(tmp_path / "M")
    assert main(["memory", "init", "--memory", path]) == 0
    return path


def _png(path: Path, width: int, height: int) -> Path:
    assert cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))
    return path


@pytest.mark.parametrize(("width", "height"), [(1, 1), (1, 500), (500, 1)])
def test_memory_add_refuses_an_image_too_small_to_hold_anything(
    mem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], width: int, height: int
) -> None:
    img = _png(tmp_path / "one.png", width, height)
    code = main(
        ["memory", "add", "tiny", "--image", str(img), "--category", "mug", "--memory", mem]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"one.png: declares {width}x{height} pixels, too small" in err
    assert "at least 16 pixels on each side" in err
    assert main(["memory", "show", "tiny", "--memory", mem]) == 1


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        msg = "cv2.imdecode was called"
        raise AssertionError(msg)

    monkeypatch.setattr(cv2, "imdecode", refuse)
    monkeypatch.setattr(cv2, "imread", refuse)


def test_a_bomb_is_refused_by_memory_add_and_ask_without_decoding(
    mem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_decoding: None
) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    code = main(["memory", "add", "b", "--image", str(bomb), "--category", "mug", "--memory", mem])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "bomb.png: declares 30000x30000 pixels, over the 100000000 pixel image limit" in err
    assert main(["ask", str(bomb), "What is this?", "--memory", mem, "--backend", "template"]) == 1
    err = capsys.readouterr().err
    assert "bomb.png: cannot read the image (PNG declares 30000x30000 pixels" in err
    assert "not decoded" in err


def test_a_fifo_or_a_device_is_refused_without_blocking(
    mem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    assert main(["ask", str(fifo), "Who?", "--memory", mem, "--backend", "template"]) == 1
    assert "photo.png: cannot read the image (is a FIFO (named pipe), not a regular file)" in (
        capsys.readouterr().err
    )
    for path in (str(fifo), "/dev/zero"):
        code = main(["memory", "add", "x", "--image", path, "--category", "mug", "--memory", mem])
        assert code == 1
        assert "not a regular file" in capsys.readouterr().err


@pytest.mark.network
def test_run_keeps_going_when_an_older_memory_holds_a_tiny_image(
    face_models: Exported,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rap_edge.memory import Memory

    obama = next(p for p in face_models.photos if p.name == "obama.jpg")
    with Memory.init(tmp_path / "M") as memory:
        memory.add("Barack", images=[obama], category="person")
        with monkeypatch.context() as m:  # as a memory made before the minimum size held it
            m.setattr("rap_edge.memory._validate.MIN_IMAGE_SIDE", 1)
            memory.add("tiny", images=[_png(tmp_path / "one.png", 1, 1)], category="person")
    folder = tmp_path / "frames"
    folder.mkdir()
    for p in face_models.photos:
        shutil.copy(p, folder / p.name)
    bomb = folder / "zz-bomb.png"
    bomb.write_bytes(png_bomb())
    common = ["--memory", str(tmp_path / "M"), "--models", str(face_models.out)]
    code = main(["run", "--source", str(folder), "--provider", "cpu", *common])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "tiny: reference image" in caplog.text  # named, skipped, and the run goes on
    assert "not embedded" in caplog.text
    assert f"processed {len(face_models.photos)} frame(s)" in out + err
    assert "zz-bomb.png): PNG declares 30000x30000 pixels" in out + err


def test_info_file_must_be_a_regular_file_of_bounded_size(
    mem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = _png(tmp_path / "mug.png", 32, 32)
    fifo = tmp_path / "info.txt"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"a" * (64 * 1024 + 1))
    # A grey square is no cup for the detector: --whole-image enrols it as it is (issue 17).
    add = ["memory", "add", "mug", "--image", str(img), "--category", "mug", "--whole-image"]
    add += ["--memory", mem]
    for path, reason in (
        ("/dev/zero", "/dev/zero: is a character device, not a regular file"),
        (str(fifo), "info.txt: is a FIFO (named pipe), not a regular file"),
        (str(huge), "huge.txt: 65537 bytes is over the 65536 byte limit for the info file"),
    ):
        assert main([*add, "--info-file", path]) == 1
        assert reason in capsys.readouterr().err
    ok = tmp_path / "ok.txt"
    ok.write_text("A blue mug with a chipped handle.\n", encoding="utf-8")
    assert main([*add, "--info-file", str(ok)]) == 0
