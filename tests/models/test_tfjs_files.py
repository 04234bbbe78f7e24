"""TF.js weight files are checked against the sizes their JSON declares (truncated .bin)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from rap_edge.errors import ModelStoreError

if TYPE_CHECKING:
    from pathlib import Path

nanodet = pytest.importorskip("export.nanodet")


def _model(tmp_path: Path, size: int) -> Path:
    weights = [
        {"name": "w", "shape": [2, 3], "dtype": "float32"},
        {"name": "h", "shape": [4], "dtype": "float32", "quantization": {"dtype": "float16"}},
    ]
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"weightsManifest": [{"paths": ["m.bin"], "weights": weights}]}))
    (tmp_path / "m.bin").write_bytes(b"\0" * size)
    return path


def test_complete_weights_pass(tmp_path: Path) -> None:
    nanodet.check_tfjs_files(_model(tmp_path, 6 * 4 + 4 * 2))


def test_truncated_bin_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match=r"m.bin: 20 bytes, but m.json declares 32"):
        nanodet.check_tfjs_files(_model(tmp_path, 20))


def test_missing_bin_and_bad_json_are_named(tmp_path: Path) -> None:
    path = _model(tmp_path, 32)
    (tmp_path / "m.bin").unlink()
    with pytest.raises(ModelStoreError, match="m.bin: missing"):
        nanodet.check_tfjs_files(path)
    path.write_text("{}")
    with pytest.raises(ModelStoreError, match="not a TF.js graph model"):
        nanodet.check_tfjs_files(path)
