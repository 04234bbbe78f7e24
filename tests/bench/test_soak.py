"""bench/soak.py end to end in seconds: rows of ~5 s instead of minutes (plumbing, not verdicts).

The live part runs on the real exported face models (the session's export, so network-marked)
and the check photos, with the template backend (no LLM needed); the node part is
``tests/ros/test_soak_node.py`` (it needs the built ROS workspace: the ``ros_ws`` fixture).
What is checked: the JSON's shape (rows, their metrics, the verdicts) and that the PNG is
written; whether the verdicts pass is the soak's business.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import pytest

if TYPE_CHECKING:
    from tests.conftest import Exported

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "soak.py"
ROW_KEYS = {
    "row",
    "t_min",
    "rss_mb",
    "fds",
    "threads",
    "children_rss_mb",
    "load1",
    "cpu_pct",
    "latency_ms",
    "sources",
    "decisions",
    "descriptions",
    "description_backends",
    "edits",
}
SOURCE_KEYS = {"processed", "rate_hz", "latency_p50_ms", "latency_p99_ms"}


def _soak(tmp_path: Path, face_models: Exported, *args: str, timeout: float) -> dict[str, Any]:
    out = tmp_path / "soak.json"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--row-seconds",
        "5",
        "--warmup",
        "0.09",  # one row of 5 s
        "--backend",
        "template",
        "--models",
        str(face_models.out),
        "--photos",
        str(face_models.photos[0].parent),
        "--out",
        str(out),
        *args,
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "ROS_DOMAIN_ID": "72"},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "wrote" in proc.stdout
    png = cv2.imread(str(out.with_suffix(".png")))
    assert png is not None
    assert png.shape[0] > 1000
    assert png.shape[1] >= 800
    return json.loads(out.read_text())


def _check_part(part: dict[str, Any], rows: int, sources: set[str]) -> None:
    assert len(part["rows"]) == rows
    for r in part["rows"]:
        assert r.keys() >= ROW_KEYS
        assert r["rss_mb"] > 0
        assert r["fds"] > 0
        assert r["threads"] > 0
        assert set(r["sources"]) == sources
        for s in r["sources"].values():
            assert s.keys() >= SOURCE_KEYS
        assert set(r["edits"]) == {"add", "update", "remove"}
        assert all(e["ok"] for e in r["edits"].values()), r["edits"]
    assert sum(s["processed"] for r in part["rows"] for s in r["sources"].values()) > 0
    v = part["verdicts"]
    assert v["warmup_rows"] == 1
    for key in ("rss", "fds"):
        assert v[key]["verdict"] in {"pass", "fail"}
        assert isinstance(v[key]["growth_pct"], float)
    trend = v["latency_p99_trend"]
    assert trend["verdict"] in {"pass", "fail"}
    assert len(trend["ci95_ms_per_min"]) == 2
    assert trend["rows"] == rows - 1
    assert v["overall"] in {"pass", "fail"}
    assert part["real_llm"] is False


@pytest.mark.network
@pytest.mark.slow
def test_live_part_writes_rows_verdicts_and_a_plot(face_models: Exported, tmp_path: Path) -> None:
    result = _soak(tmp_path, face_models, "--minutes", "0.4", "--node-minutes", "0", timeout=240)
    assert {"date", "git", "machine", "settings", "live"} <= result.keys()
    assert "node" not in result
    assert result["settings"]["row_seconds"] == 5.0
    assert result["git"]["commit"]
    live = result["live"]
    _check_part(live, rows=5, sources={"cam/a", "cam/b"})
    assert "template" in live["description_backend"]
    assert sum(r["descriptions"] for r in live["rows"]) > 0
    assert live["closed_cleanly"] is True
