"""Settings: one check, the same messages from every source, layering, thresholds lookup."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

import pytest

from rap_edge.app import Settings, find_thresholds
from rap_edge.cli._options import (
    add_generation_options,
    add_memory_option,
    add_model_options,
    add_object_options,
    settings_from_args,
)
from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_memory_option(p)
    add_model_options(p)
    add_object_options(p)
    add_generation_options(p)
    return p


def _message(call: object) -> str:
    with pytest.raises(InvalidInputError) as err:
        call()  # type: ignore[operator]
    return str(err.value)


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("tiles", "9", 9),
        ("top_k", "0", 0),
        ("face_threshold", "1.5", 1.5),
        ("max_tokens", "5000", 5000),
        ("provider", "tpu", "tpu"),
        ("llm_provider", "tensorrt", "tensorrt"),
    ],
)
def test_a_bad_value_gets_the_same_message_from_every_source(
    name: str, text: str, value: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_mapping = _message(lambda: Settings.from_mapping({name: value}))
    from_env = _message(lambda: Settings.from_env({f"RAP_EDGE_{name.upper()}": text}))
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text(f"{name}: {text}\n")
    from_yaml = _message(lambda: Settings.from_yaml(yaml_file))
    monkeypatch.delenv(f"RAP_EDGE_{name.upper()}", raising=False)
    flag = "--" + name.replace("_", "-")
    if name in {"top_k", "face_threshold"}:  # settings without a flag: the ROS/YAML names
        from_flags = from_mapping
    else:
        plain = name not in {"provider", "llm_provider"}
        args = _parser().parse_args([flag, text] if plain else [])
        if name in {"provider", "llm_provider"}:
            setattr(args, name, text)  # argparse's choices would refuse it first
        from_flags = _message(lambda: settings_from_args(args))
    assert from_mapping == from_env == from_yaml == from_flags
    assert name in from_mapping


def test_layers_defaults_yaml_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rap-edge.yaml"
    config.write_text("tiles: 2\nmax_tokens: 40\ntop_k: 5\nobjects: true\n")
    monkeypatch.setenv("RAP_EDGE_MAX_TOKENS", "50")
    monkeypatch.setenv("RAP_EDGE_TOP_K", "7")
    args = _parser().parse_args(["--config", str(config), "--max-tokens", "60", "--no-flip"])
    s = settings_from_args(args)
    assert (s.tiles, s.top_k, s.max_tokens, s.objects, s.flip) == (2, 7, 60, True, False)
    assert s.face_encoder == "dlib_resnet.json"  # untouched default


def test_unknown_names_and_non_mapping_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown setting.*tilez"):
        Settings.from_mapping({"tilez": 2})
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(InvalidInputError, match="mapping"):
        Settings.from_yaml(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("tiles: [1\n")
    with pytest.raises(InvalidInputError, match="cannot read the settings"):
        Settings.from_yaml(broken)
    with pytest.raises(InvalidInputError, match="no such settings file"):
        Settings.from_yaml(tmp_path / "missing.yaml")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # would block a plain read forever
    with pytest.raises(InvalidInputError, match="not a regular file"):
        Settings.from_yaml(fifo)


def test_text_values_are_converted_by_type() -> None:
    s = Settings.from_env(
        {"RAP_EDGE_TRACK": "off", "RAP_EDGE_LLM": "~/llm", "RAP_EDGE_MARGIN": "none"}
    )
    assert s.track is False and s.llm is not None and s.llm.name == "llm" and s.margin is None
    with pytest.raises(InvalidInputError, match="track must be true or false"):
        Settings.from_env({"RAP_EDGE_TRACK": "maybe"})


def _thresholds(folder: Path, value: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "thresholds.json"
    path.write_text(json.dumps({"version": 1, "encoders": {"enc": {"threshold": value}}}))
    return path


def test_thresholds_are_found_beside_the_memory_or_models_never_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    _thresholds(repo / "calibration", 0.5)
    monkeypatch.chdir(repo)
    memory, models = tmp_path / "memory", tmp_path / "models"
    memory.mkdir()
    models.mkdir()
    assert find_thresholds(Settings(), memory=memory, models=models) == (
        None,
        "no threshold file",
    )
    at_models = _thresholds(models, 0.6)
    assert find_thresholds(Settings(), memory=memory, models=models)[0] == at_models
    at_memory = _thresholds(memory, 0.7)
    assert find_thresholds(Settings(), memory=memory, models=models)[0] == at_memory
    given = _thresholds(tmp_path / "given", 0.8)
    assert find_thresholds(Settings(thresholds=given), memory=memory, models=models)[0] == given
