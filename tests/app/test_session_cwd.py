"""The same ``rap-edge run`` decides the same from any working directory (real models)."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import pytest

from rap_edge.app import Session, Settings
from rap_edge.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = pytest.mark.network


def _decisions(jsonl: Path) -> list[tuple[str, list[tuple[str, str | None]]]]:
    out = []
    for line in jsonl.read_text().splitlines():
        rec = json.loads(line)
        if "recognitions" in rec:
            out.append(
                (
                    rec["source"].rsplit("/", 1)[-1],
                    [(r["decision"], r.get("name")) for r in rec["recognitions"]],
                )
            )
    return out


def test_run_decides_the_same_from_any_working_directory(
    face_models: Exported,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("RAP_EDGE_THRESHOLDS", raising=False)
    with Session.open(Settings(models=face_models.out), memory="none") as session:
        encoder = session.models.encoder_id
    photos = {p.name: p for p in face_models.photos}
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama2.jpg", "biden.jpg", "obama3.jpg"):
        shutil.copy(photos[name], folder / name)
    memory = tmp_path / "memory"
    assert main(["memory", "init", str(memory)]) == 0
    add = ["memory", "add", "Barack", "--image", str(photos["obama.jpg"]), "--category", "person"]
    assert main([*add, "--memory", str(memory)]) == 0
    # A repository-like folder whose ./calibration/thresholds.json would make everyone
    # unknown if the working directory were read (it was, before).
    repo = tmp_path / "repo"
    (repo / "calibration").mkdir(parents=True)
    (repo / "calibration" / "thresholds.json").write_text(
        json.dumps({"version": 1, "encoders": {encoder: {"threshold": 0.9999}}})
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runs = []
    for cwd in (repo, elsewhere):
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        jsonl = tmp_path / f"{cwd.name}.jsonl"
        args = ["run", "--source", str(folder), "--memory", str(memory), "--jsonl", str(jsonl)]
        assert main([*args, "--models", str(face_models.out), "--provider", "cpu"]) == 0
        err = capsys.readouterr().err
        threshold_line = next(line for line in err.splitlines() if line.startswith("threshold"))
        runs.append((threshold_line, _decisions(jsonl)))
    assert runs[0] == runs[1]
    line, decisions = runs[0]
    assert "0.9999" not in line and "manifest" in line
    named = {src: [n for d, n in recs if d == "known"] for src, recs in decisions}
    assert named["obama2.jpg"] == ["Barack"] and named["biden.jpg"] == []
