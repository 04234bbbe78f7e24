"""`rap-edge calibrate collect` and `read_set` on a short synthetic video made here.

The video has five static scenes of twelve frames each (small noise only: near-duplicates),
with a scene change between them; it tests the sampling plumbing, not calibration quality.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.calibsets import collect, read_set, set_path
from rap_edge.errors import InvalidInputError, ModelStoreError

if TYPE_CHECKING:
    from pathlib import Path

SCENES, PER_SCENE = 5, 12


def _video(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write MJPG/AVI")
    rng = np.random.default_rng(0)
    for _ in range(SCENES):
        blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        scene = cv2.resize(blocks, (64, 48), interpolation=cv2.INTER_NEAREST).astype(int)
        for _ in range(PER_SCENE):
            writer.write(
                np.clip(scene + rng.integers(-3, 4, scene.shape), 0, 255).astype(np.uint8)
            )
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _video(tmp_path_factory.mktemp("video") / "scenes.avi")


def test_collect_skips_near_duplicates_and_writes_a_manifest(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    lines: list[str] = []
    manifest = collect(str(video), out, frames=50, progress=False, say=lines.append)
    summary = manifest["summary"]
    # One frame per static scene survives; every other frame is a near-duplicate.
    assert summary["kept"] == SCENES
    assert [f["index"] for f in manifest["frames"]] == [i * PER_SCENE for i in range(SCENES)]
    assert summary["read"] == SCENES * PER_SCENE
    assert summary["near_duplicates"] == SCENES * PER_SCENE - SCENES
    assert summary["corrupt"] == 0
    assert "kept 5 of 60" in lines[0] and "55 skipped as near-duplicate" in lines[0]
    on_disk = json.loads((out / "set.json").read_text())
    assert on_disk["version"] == 1 and on_disk["name"] == "set" and on_disk["source"] == str(video)
    assert {f.name for f in out.iterdir()} == {"set.json"} | {f["file"] for f in on_disk["frames"]}
    assert all("time_s" in f for f in on_disk["frames"])
    images = read_set(out)
    assert len(images) == SCENES
    assert all(i.dtype == np.uint8 and i.shape == (48, 64, 3) for i in images)
    # min_change 0 keeps every readable frame; --frames then spreads them over the stream.
    spread = collect(
        str(video), tmp_path / "all", frames=6, min_change=0.0, progress=False, say=lines.append
    )
    indices = [f["index"] for f in spread["frames"]]
    assert len(indices) == 6 and indices[0] == 0 and indices[-1] >= 50


def test_read_set_checks_hashes_and_names_the_file(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    manifest = collect(str(video), out, frames=10, progress=False, say=lambda _: None)
    victim = out / manifest["frames"][2]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match=rf"{victim.name}: does not match its SHA-256"):
        read_set(out)
    victim.unlink()
    with pytest.raises(ModelStoreError, match=rf"{victim.name}: calibration frame is missing"):
        read_set(out)
    (out / "set.json").write_text("{")
    with pytest.raises(InvalidInputError, match="not a readable calibration set manifest"):
        read_set(out)
    with pytest.raises(InvalidInputError, match="not a calibration set"):
        read_set(tmp_path / "nothing")


def test_bare_names_mean_the_repository_sets_folder() -> None:
    from rap_edge.calibsets import REPO_SETS

    assert set_path("kitchen") == REPO_SETS / "kitchen"
    assert REPO_SETS.parent.name == "calibration" and (REPO_SETS / "check-photos.json").is_file()
    local = set_path("./kitchen")
    assert local.name == "kitchen" and local != REPO_SETS / "kitchen"


def test_cli_refuses_to_overwrite_without_force(
    video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rap_edge.cli import main

    out = tmp_path / "set"
    args = ["calibrate", "collect", "--source", str(video), "--out", str(out), "--frames", "3"]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    first = json.loads((out / "set.json").read_text())
    assert len(first["frames"]) == 3
    (out / "notes.txt").write_text("mine")
    assert main(args) == 1
    assert "not empty; pass --force" in capsys.readouterr().err
    assert main([*args[:-1], "2", "--force"]) == 0
    assert len(read_set(out)) == 2
    assert (out / "notes.txt").read_text() == "mine"  # --force removes only the set's files
    assert len(list(out.glob("*.jpg"))) == 2
    # A source that does not exist: exit 1, and no folder is created.
    assert (
        main(
            [
                "calibrate",
                "collect",
                "--source",
                str(tmp_path / "none.avi"),
                "--out",
                str(tmp_path / "new"),
            ]
        )
        == 1
    )
    assert not (tmp_path / "new").exists()
    assert main([*args[:-2], "--frames", "0", "--force"]) == 1
    assert "--frames must be at least 1" in capsys.readouterr().err


def test_corrupt_frames_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        cv2.imwrite(str(folder / f"f{i}.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    (folder / "f9.png").write_bytes(b"not a png")
    manifest = collect(
        str(folder), tmp_path / "set", frames=10, progress=False, say=lambda _: None
    )
    assert manifest["summary"]["kept"] == 4 and manifest["summary"]["corrupt"] == 1
    assert "time_s" not in manifest["frames"][0]  # files have no time


def test_quantize_load_set_takes_a_collected_folder(video: Path, tmp_path: Path) -> None:
    from export.quantize import load_set

    collect(str(video), tmp_path / "set", frames=4, progress=False, say=lambda _: None)
    images = load_set(str(tmp_path / "set"), store=None)  # type: ignore[arg-type]
    assert len(images) == 4
