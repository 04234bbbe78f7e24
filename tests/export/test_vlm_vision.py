"""VLM vision towers to ONNX, and the transformers backend running its image side through them.

Tiny LLaVA and Idefics3 models with random weights built from a config: this proves the export,
the parity check and the wiring, not the quality of any real model.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("transformers")
pytest.importorskip("onnxscript")

from export import vlm_vision
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.generate._hf import TransformersBackend
from rap_edge.generate._vision import OnnxVisionTower
from tests.generate.test_transformers_backend import (
    BUILDERS,
    images,  # noqa: F401 - fixture
    offline,  # noqa: F401 - autouse fixture: no hub access
    rap_prompt,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["llava", "idefics3"])
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, dict]:
    folder = BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    out = folder.with_name(folder.name + "-vision")
    manifest = vlm_vision.export(folder, out, say=lambda _: None)
    return folder, out, manifest


def test_export_matches_torch_and_records_it(exported: tuple[Path, Path, dict]) -> None:
    folder, out, manifest = exported
    assert manifest["parity"]["min_cosine"] >= vlm_vision.MIN_COSINE
    assert manifest["parity"]["images"] == 3
    on_disk = json.loads((out / vlm_vision.MANIFEST).read_text())
    assert on_disk == manifest
    assert (out / "vision.onnx").is_file()
    assert not list(out.glob("*.partial"))
    assert manifest["model_type"] == json.loads((folder / "config.json").read_text())["model_type"]
    # LLaVA: 2x2 patches (CLS dropped); Idefics3: 2x2 patches pixel-shuffled by 2 into 1.
    expected_tokens = {"llava": 4, "idefics3": 1}[manifest["model_type"]]
    assert manifest["output"]["tokens_per_image"] == expected_tokens


def test_backend_runs_the_image_side_on_onnx_with_the_same_answer(
    exported: tuple[Path, Path, dict],
    images: dict[str, Path],  # noqa: F811 - the imported fixture
) -> None:
    folder, out, _ = exported
    prompt = rap_prompt(images)
    torch_only = TransformersBackend(folder)
    routed = TransformersBackend(folder, vision_onnx=out, vision_provider="cpu")
    assert routed.vision is not None
    assert routed.vision.provider == "cpu"
    expected = "".join(torch_only.generate(prompt, max_tokens=6))
    got = "".join(routed.generate(prompt, max_tokens=6))
    assert routed.vision.calls >= 1
    assert got == expected


def test_a_tower_from_another_model_is_refused(
    exported: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    folder, out, _ = exported
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    config = json.loads((other / "config.json").read_text())
    config["rap_edge_note"] = "a different model"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelStoreError, match="exported from another model"):
        TransformersBackend(other, vision_onnx=out)


def test_a_tampered_onnx_file_is_refused(
    exported: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    folder, out, _ = exported
    copy = tmp_path / "vision"
    shutil.copytree(out, copy)
    with (copy / "vision.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelStoreError, match="does not match the hash"):
        TransformersBackend(folder, vision_onnx=copy)


def test_unsupported_and_missing_folders_say_why(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        vlm_vision.export(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "qwen").mkdir()
    (tmp_path / "qwen" / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    with pytest.raises(InvalidInputError, match="qwen2_vl"):
        vlm_vision.export(tmp_path / "qwen", tmp_path / "out")
    assert vlm_vision.main(["--hf-dir", str(tmp_path / "qwen")]) == 1
    with pytest.raises(ModelStoreError, match="not a vision-tower export"):
        OnnxVisionTower(tmp_path, model_dir=tmp_path / "qwen")
