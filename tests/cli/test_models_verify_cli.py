"""``rap-edge models verify`` reports every model, whatever happened to the others, and exits
with the worst status (issue 14, item 9)."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import pytest

from rap_edge.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = pytest.mark.network


def test_models_verify_reports_every_model_after_a_damaged_one(
    face_models: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "store"
    shutil.copytree(face_models.out.parent, copy)
    # dlib-resnet-v1 (checked first): its reference weights are gone, so its check cannot run.
    (copy / "dlib-face" / "dlib_face_recognition_resnet_model_v1.dat").unlink()
    # dlib-shape-5: its file no longer matches its manifest.
    npz = copy / "onnx" / "dlib_shape_5.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    # A manifest that is not JSON.
    (copy / "onnx" / "broken.json").write_text("{", encoding="utf-8")

    code = main(["models", "verify", "--dir", str(copy), "--json"])
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert code == 2
    assert rows["dlib-resnet-v1"]["status"] == 2
    assert "could not check" in rows["dlib-resnet-v1"]["check"]
    assert "dlib_face_recognition_resnet_model_v1.dat" in rows["dlib-resnet-v1"]["check"]
    assert (rows["dlib-shape-5"]["hash"], rows["dlib-shape-5"]["status"]) == ("DIFFERS", 1)
    assert (rows["broken.json"]["hash"], rows["broken.json"]["status"]) == ("unreadable", 2)
    assert rows["res10-ssd-face"]["ok"] is True  # checked after the failures, and passes
    assert rows["res10-ssd-face"]["status"] == 0

    assert main(["models", "verify", "--dir", str(copy)]) == 2  # the table: every row too
    out = capsys.readouterr().out
    assert all(name in out for name in ("dlib-resnet-v1", "dlib-shape-5", "res10-ssd-face"))


def test_a_coco_detector_parity_row_is_summarised_not_a_crash() -> None:
    """The NanoDet/CenterNet parity results also carry ``min_iou``; before, verify took them
    for the face detector's and failed on the missing ``faces`` key."""
    from export.verify import _summary

    row = {
        "matched": 17,
        "reference_detections": 17,
        "min_iou": 0.999999,
        "max_score_diff": 1.9e-6,
    }
    assert _summary(row) == ("17/17 detections matched, min IoU 1.00000, max score diff 1.9e-06")
    face = {"faces": 23, "reference_faces": 23, "min_iou": 0.99, "max_score_diff": 0.001}
    assert _summary(face).startswith("23/23 faces")


def test_the_thresholds_file_beside_the_manifests_is_not_a_model(tmp_path: Path) -> None:
    """`make models` installs thresholds.json into the models folder; verify and list once
    reported it as an unreadable manifest (and verify exited 2 on a healthy store)."""
    from rap_edge.models import manifest_paths

    (tmp_path / "thresholds.json").write_text('{"version": 1, "encoders": {}}')
    (tmp_path / "a.json").write_text("{}")
    assert manifest_paths(tmp_path) == [tmp_path / "a.json"]
    assert manifest_paths(tmp_path / "missing") == []
