"""``rap-edge export``: the converters are reachable from the one command, with their options."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from rap_edge.cli import main
from rap_edge.runtime import tensorrt_capability

if TYPE_CHECKING:
    from pathlib import Path

COMMANDS = ("encoder", "vision-tower", "rap-mllm", "llm", "engine")


def test_every_converter_is_listed_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--help"])
    assert exit_.value.code == 0
    listing = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command}" in listing
    expected = {
        "encoder": "--hf-dir",
        "vision-tower": "--hf-dir",
        "rap-mllm": "--vision-tower",
        "llm": "--gguf",
        "engine": "--workspace-mb",
    }
    for command, option in expected.items():
        with pytest.raises(SystemExit):
            main(["export", command, "--help"])
        assert option in capsys.readouterr().out


@pytest.mark.skipif(tensorrt_capability()[0], reason="TensorRT is present here")
def test_engine_without_tensorrt_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["export", "engine", "--onnx", str(tmp_path / "m.onnx"), "--precision", "fp16"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("rap-edge: error: TensorRT is not available here")
    assert len(err.splitlines()) == 1


def test_bad_folders_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "vision-tower", "--hf-dir", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "qwen").mkdir()
    (tmp_path / "qwen" / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    assert main(["export", "vision-tower", "--hf-dir", str(tmp_path / "qwen")]) == 1
    assert "qwen2_vl" in capsys.readouterr().err
    assert main(["export", "llm", "--hf-dir", str(tmp_path)]) == 1
    assert "--out is required" in capsys.readouterr().err
