"""The ``rap-edge memory`` CLI: commands, JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.cli import main
from tests.conftest import png_bytes

if TYPE_CHECKING:
    from pathlib import Path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mem_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "mem"
    monkeypatch.setenv("RAP_EDGE_MEMORY", str(path))
    assert main(["memory", "init"]) == 0
    return path


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    out = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        p.write_bytes(png_bytes(i))
        out.append(p)
    return out


def test_full_cycle(
    capsys: pytest.CaptureFixture[str], mem_dir: Path, images: list[Path], tmp_path: Path
) -> None:
    capsys.readouterr()
    vecs = tmp_path / "v.npy"
    np.save(vecs, np.eye(4, dtype=np.float32)[:2])
    code, out, _ = run(
        capsys,
        "memory",
        "add",
        "Alice",
        "--image",
        str(images[0]),
        "--image",
        str(images[1]),
        "--category",
        "person",
        "--info",
        "tea",
        "--vectors",
        str(vecs),
        "--encoder",
        "test/e4",
        "--json",
    )
    assert code == 0
    alice = json.loads(out)
    assert alice["name"] == "Alice" and len(alice["images"]) == 2
    code, out, _ = run(capsys, "memory", "add", "mug", "--image", str(images[2]))
    assert code == 0 and out.startswith("added c_") and "1 pending" in out
    code, out, _ = run(capsys, "memory", "list", "--json")
    assert [c["name"] for c in json.loads(out)] == ["Alice", "mug"]
    code, out, _ = run(capsys, "memory", "show", "alice")
    assert code == 0 and "info: tea" in out and "test/e4" in out
    code, out, _ = run(
        capsys,
        "memory",
        "update",
        "Alice",
        "--name",
        "Alicia",
        "--add-alias",
        "Ali",
        "--info",
        "coffee now",
    )
    assert code == 0 and "Alicia (aka Ali)" in out
    q = tmp_path / "q.npy"
    np.save(q, np.array([[1, 0.1, 0, 0], [0, 0, 0, 1]], dtype=np.float32))
    code, out, _ = run(capsys, "memory", "search", "--vectors", str(q), "--threshold", "0.5")
    assert out.splitlines()[0].startswith("query 0: Alicia (0.99")
    assert out.splitlines()[1] == "query 1: unknown (nothing above the threshold)"
    code, out, _ = run(
        capsys,
        "memory",
        "update",
        "Alicia",
        "--remove-image",
        str(alice["images"][1]["id"]),
        "--json",
    )
    assert code == 0 and len(json.loads(out)["images"]) == 1
    code, out, _ = run(capsys, "memory", "rebuild-index")
    assert "index of test/e4: 1 vector(s)" in out and "1 image(s) have no vector" in out
    code, out, _ = run(capsys, "memory", "export-rap", str(tmp_path / "exp"))
    assert code == 0 and "2 concept(s)" in out
    code, out, _ = run(capsys, "memory", "remove", "mug", "Alicia")
    assert code == 0 and out.count("removed") == 2
    code, out, _ = run(capsys, "memory", "verify")
    assert code == 0 and out.startswith("ok: 0 concepts")
    code, out, _ = run(capsys, "memory", "import-rap", str(tmp_path / "exp" / "database.json"))
    assert code == 0 and "2 concept(s) imported" in out
    code, out, _ = run(capsys, "memory", "vacuum")
    assert code == 0 and "removed 0 orphan file(s)" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["memory", "show", "nobody"], 1, "no concept with id or name 'nobody'"),
        (["memory", "add", " "], 1, "name is empty"),
        (["memory", "add", "x", "--image", "/no/such.png"], 1, "/no/such.png: no such file"),
        (["memory", "search", "--vectors", "/no/q.npy"], 1, "not a readable .npy"),
        (["memory", "update", "nobody", "--info", "x"], 1, "no concept"),
        (["memory", "import-rap", "/no/database.json"], 1, "no such file"),
    ],
)
def test_user_errors_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str], mem_dir: Path, argv: list[str], code: int, message: str
) -> None:
    capsys.readouterr()
    got, out, err = run(capsys, *argv)
    assert got == code
    assert err.count("\n") == 1 and err.startswith("rap-edge: error: ")
    assert message in err
    assert out == ""


def test_environment_errors_exit_2(
    capsys: pytest.CaptureFixture[str], mem_dir: Path, tmp_path: Path
) -> None:
    capsys.readouterr()
    conn = sqlite3.connect(mem_dir / "memory.db")
    conn.execute("PRAGMA user_version = 42")
    conn.commit()
    conn.close()
    code, _, err = run(capsys, "memory", "list")
    assert code == 2 and "newer rap-edge" in err
    code, _, err = run(capsys, "memory", "list", "--memory", str(tmp_path / "none"))
    assert code == 2 and "rap-edge memory init" in err


def test_locked_memory_exits_2(capsys: pytest.CaptureFixture[str], mem_dir: Path) -> None:
    capsys.readouterr()
    blocker = sqlite3.connect(mem_dir / "memory.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        code, _, err = run(capsys, "memory", "add", "x", "--lock-timeout", "0.2")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert code == 2 and "locked" in err


def test_verify_reports_damage_and_exits_2(
    capsys: pytest.CaptureFixture[str], mem_dir: Path, images: list[Path]
) -> None:
    run(capsys, "memory", "add", "x", "--image", str(images[0]))
    stored = next((mem_dir / "images").rglob("*.png"))
    stored.write_bytes(b"tampered")
    code, out, _ = run(capsys, "memory", "verify", "--json")
    report = json.loads(out)
    assert code == 2 and not report["ok"]
    assert "does not match its hash" in report["problems"][0]


def test_init_takes_a_folder_argument(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "memory", "init", str(tmp_path / "new"))
    assert code == 0 and "created" in out
    code, out, _ = run(capsys, "memory", "init", str(tmp_path / "new"))
    assert code == 0 and "already exists" in out


def test_help_and_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rap_edge", "memory", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    for action in (
        "init",
        "add",
        "list",
        "show",
        "update",
        "remove",
        "import-rap",
        "export-rap",
        "rebuild-index",
        "verify",
        "vacuum",
    ):
        assert action in done.stdout


def test_demo_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "demo", "--workdir", str(tmp_path / "d"))
    assert code == 0
    assert "near mug                     -> mug" in out
    assert "unlike anything              -> unknown" in out
    assert "verify: ok" in out
    assert (tmp_path / "d" / "exported_database" / "database.json").is_file()
    step9 = out.partition("9. a pet and a thing")[2]
    if step9 and "skipped" not in step9:  # the object models are exported (`make models`)
        assert "Chelsea (object" in step9
        assert "Ana's motorbike (object" in step9


# -- issue 14 item 8: one-line errors instead of tracebacks --------------------------------------


def _one_line_error(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("rap-edge: error: "), err


def test_import_rap_list_valued_token_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], mem_dir: Path, images: list[Path], tmp_path: Path
) -> None:
    db = tmp_path / "database.json"
    db.write_text(
        json.dumps(
            {
                "concept_dict": {"<a>": {"name": "a", "image": images[0].name}},
                "path_to_concept": {images[1].name: ["<a>"]},
            }
        )
    )
    capsys.readouterr()
    code, out, err = run(capsys, "memory", "import-rap", str(db))
    assert code == 1 and out == ""
    _one_line_error(err)
    assert f"{images[1].name!r}" in err and "must be a concept token" in err


def test_import_rap_deeply_nested_json_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], mem_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "database.json"
    db.write_text('{"concept_dict": ' + "[" * 200_000 + "]" * 200_000 + "}")
    capsys.readouterr()
    code, out, err = run(capsys, "memory", "import-rap", str(db))
    assert code == 1 and out == ""
    _one_line_error(err)
    assert "nested too deeply" in err


def test_export_rap_with_a_missing_image_file_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], mem_dir: Path, images: list[Path], tmp_path: Path
) -> None:
    assert main(["memory", "add", "Ana", "--image", str(images[0])]) == 0
    stored = next((mem_dir / "images").rglob("*.png"))
    stored.unlink()
    capsys.readouterr()
    code, out, err = run(capsys, "memory", "export-rap", str(tmp_path / "out"))
    assert code == 2 and out == ""
    _one_line_error(err)
    assert "'Ana'" in err and str(stored) in err and "missing" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["1e308", "inf", "nan", "0", "-1"])
def test_absurd_lock_timeout_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], mem_dir: Path, value: str
) -> None:
    capsys.readouterr()
    code, out, err = run(capsys, "memory", "list", "--lock-timeout", value)
    assert code == 1 and out == ""
    _one_line_error(err)
    assert "lock" in err and "timeout" in err.replace("_", " ")


def test_vacuum_with_a_missing_image_file_exits_2(
    capsys: pytest.CaptureFixture[str], mem_dir: Path, images: list[Path]
) -> None:
    """Issue 14, item 11: vacuum compacts, but does not call a damaged memory fine."""
    assert main(["memory", "add", "Ana", "--image", str(images[0])]) == 0
    assert main(["memory", "add", "Bo", "--image", str(images[1])]) == 0
    stored = {p.read_bytes(): p for p in (mem_dir / "images").rglob("*.png")}
    missing = stored[images[0].read_bytes()]
    missing.unlink()
    capsys.readouterr()
    code, out, err = run(capsys, "memory", "vacuum")
    assert code == 2 and out == ""
    _one_line_error(err)
    assert "1 image file(s) are missing" in err and "'Ana'" in err and str(missing) in err
    assert "'Bo'" not in err
    missing.write_bytes(images[0].read_bytes())
    code, out, _ = run(capsys, "memory", "vacuum")
    assert code == 0 and "removed 0 orphan file(s)" in out
