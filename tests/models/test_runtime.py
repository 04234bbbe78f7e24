"""Manifests, sessions and the Encoder on a tiny ONNX graph built here (plumbing, not quality)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.errors import BackendError, InvalidInputError, ModelStoreError
from rap_edge.models import (
    Encoder,
    ModelManifest,
    Preprocess,
    load_manifest,
    preprocess,
    sha256_file,
    write_manifest,
)
from rap_edge.runtime import create_session

if TYPE_CHECKING:
    from pathlib import Path

onnx = pytest.importorskip("onnx")


def _tiny_onnx(path: Path, *, input_name: str = "images") -> Path:
    """[N,3,8,8] -> per-channel mean [N,3]: a real ONNX graph with no weights."""
    from onnx import TensorProto, helper

    node = helper.make_node("ReduceMean", [input_name, "axes"], ["embedding"], keepdims=0)
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])],
        initializer=[axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _manifest(tmp_path: Path, **over: object) -> ModelManifest:
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    base = ModelManifest(
        name="tiny",
        task="embed",
        encoder_id="tiny@test",
        onnx=model,
        onnx_sha256=sha256_file(model),
        input_name="images",
        output_name="embedding",
        dim=3,
        metric="cosine",
        threshold=0.5,
        preprocess=Preprocess(
            height=8,
            width=8,
            color="RGB",
            scale=1 / 255,
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
        ),
    )
    manifest = replace(base, **over)  # type: ignore[arg-type]
    write_manifest(manifest, tmp_path / "tiny.json")
    return manifest


def test_manifest_roundtrip_and_encoder(tmp_path: Path) -> None:
    _manifest(tmp_path)
    loaded = load_manifest(tmp_path / "tiny.json")
    assert loaded.onnx == (tmp_path / "tiny.onnx").resolve()
    assert loaded.preprocess.mean == (0.5, 0.5, 0.5)
    enc = Encoder(tmp_path / "tiny.json", provider="cpu", batch_size=2)
    assert (enc.encoder_id, enc.dim, enc.provider) == ("tiny@test", 3, "cpu")
    # A uniform BGR image: the graph returns the normalised channel values, in RGB order.
    img = np.zeros((5, 7, 3), dtype=np.uint8)
    img[:] = (255, 0, 127)  # B, G, R
    out = enc.embed([img, img, img])
    expected = (np.array([127, 0, 255]) / 255 - 0.5) / 0.25
    assert out.shape == (3, 3)
    np.testing.assert_allclose(out, np.tile(expected, (3, 1)), atol=1e-5)
    assert enc.embed([]).shape == (0, 3)


def test_preprocess_follows_the_manifest(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    rgb = preprocess([img], m)
    bgr = preprocess([img], replace(m, preprocess=replace(m.preprocess, color="BGR")))
    np.testing.assert_allclose(rgb[0, 0], bgr[0, 2])
    nhwc = preprocess([img], replace(m, preprocess=replace(m.preprocess, layout="NHWC")))
    assert rgb.shape == (1, 3, 8, 8) and nhwc.shape == (1, 8, 8, 3)
    with pytest.raises(InvalidInputError, match=r"image #1 must be a BGR uint8 image"):
        preprocess([np.zeros((4, 4), dtype=np.uint8)], m)
    with pytest.raises(InvalidInputError, match=r"image #1 .*, got float32 \(4, 4, 3\)"):
        preprocess([np.zeros((4, 4, 3), dtype=np.float32)], m)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("dim"), "field 'dim' is missing"),
        (lambda d: d.update(manifest_version=99), "manifest version 99"),
        (lambda d: d["preprocess"].update(color="YUV"), "unsupported value"),
        (lambda d: d["preprocess"].pop("mean"), "'preprocess' is incomplete"),
    ],
)
def test_bad_manifests_name_the_problem(tmp_path: Path, edit: object, match: str) -> None:
    _manifest(tmp_path)
    path = tmp_path / "tiny.json"
    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    with pytest.raises(ModelStoreError, match=match):
        load_manifest(path)


def test_missing_and_broken_manifest_files(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="manifest is missing"):
        load_manifest(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ModelStoreError, match="bad.json: not a readable JSON manifest"):
        load_manifest(tmp_path / "bad.json")


def test_model_that_does_not_match_its_manifest(tmp_path: Path) -> None:
    m = _manifest(tmp_path, input_name="pixels")
    with pytest.raises(ModelStoreError, match="does not match its model.*'pixels'"):
        Encoder(m, provider="cpu")
    m = _manifest(tmp_path, dim=5)
    with pytest.raises(ModelStoreError, match="says dim 5, the model outputs 3"):
        Encoder(m, provider="cpu")
    m = _manifest(tmp_path, onnx_sha256="0" * 64)
    with pytest.raises(ModelStoreError, match="does not match the SHA-256 in its manifest"):
        Encoder(m, provider="cpu")


def test_corrupt_and_missing_model_files(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    m.onnx.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ModelStoreError, match="tiny.onnx: not a loadable ONNX model"):
        Encoder(m, provider="cpu", check_hash=False)
    m.onnx.unlink()
    with pytest.raises(ModelStoreError, match="model file is missing"):
        Encoder(m, provider="cpu")


def test_providers_are_checked_and_reported(tmp_path: Path) -> None:
    model = _tiny_onnx(tmp_path / "t.onnx")
    session, used = create_session(model, provider="auto")
    assert used == "cpu" and session.get_providers()[0] == "CPUExecutionProvider"
    with pytest.raises(BackendError, match="unknown execution provider 'npu'"):
        create_session(model, provider="npu")  # type: ignore[arg-type]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendError, match="'cuda' is not available .*offers"):
            create_session(model, provider="cuda")


def test_cpu_threads_do_not_spin_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spinning workers of one session took the cores from the next (bench/ort_spin.py)."""
    from rap_edge.runtime import SPIN_ENV

    model = _tiny_onnx(tmp_path / "t.onnx")
    key = "session.intra_op.allow_spinning"
    monkeypatch.delenv(SPIN_ENV, raising=False)
    session, _ = create_session(model, provider="cpu")
    assert session.get_session_options().get_session_config_entry(key) == "0"
    monkeypatch.setenv(SPIN_ENV, "1")
    session, _ = create_session(model, provider="cpu")
    options = session.get_session_options()
    with pytest.raises(RuntimeError):  # no entry: ONNX Runtime's default (spinning) holds
        options.get_session_config_entry(key)


def test_engine_cache_is_keyed_by_model_version_gpu_and_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rap_edge.runtime import engine_cache_dir

    sha = "ab" * 32
    base = engine_cache_dir(
        sha, trt_version="10.9.0", gpu="NVIDIA Jetson AGX Orin", precision="fp16", root=tmp_path
    )
    assert base == tmp_path / f"{sha[:16]}-trt10.9.0-nvidia-jetson-agx-orin-fp16"
    others = {
        engine_cache_dir(
            "cd" * 32,
            trt_version="10.9.0",
            gpu="NVIDIA Jetson AGX Orin",
            precision="fp16",
            root=tmp_path,
        ),
        engine_cache_dir(
            sha, trt_version="8.6.2", gpu="NVIDIA Jetson AGX Orin", precision="fp16", root=tmp_path
        ),
        engine_cache_dir(
            sha, trt_version="10.9.0", gpu="NVIDIA H100 80GB HBM3", precision="fp16", root=tmp_path
        ),
        engine_cache_dir(
            sha,
            trt_version="10.9.0",
            gpu="NVIDIA Jetson AGX Orin",
            precision="fp32",
            root=tmp_path,
        ),
    }
    assert base not in others and len(others) == 4
    monkeypatch.setenv("RAP_EDGE_ENGINES", str(tmp_path / "env"))
    assert engine_cache_dir(sha, trt_version="10", gpu="../x", precision="fp32").parent == (
        tmp_path / "env"
    )
    with pytest.raises(ModelStoreError, match="hex SHA-256"):
        engine_cache_dir("../../etc", trt_version="10", gpu="g", precision="fp32")
    with pytest.raises(BackendError, match="precision"):
        engine_cache_dir(sha, trt_version="10", gpu="g", precision="int4")  # type: ignore[arg-type]


def test_tensorrt_is_used_only_when_the_capability_check_passes(tmp_path: Path) -> None:
    from rap_edge.runtime import tensorrt_capability

    ok, why = tensorrt_capability()
    model = _tiny_onnx(tmp_path / "t.onnx")
    if ok:
        pytest.skip(f"TensorRT is usable here ({why}); see the engine-cache test")
    assert why  # the reason names what is missing
    with pytest.raises(BackendError, match="(TensorRT cannot be used here|not available)"):
        create_session(model, provider="tensorrt")
    assert create_session(model, provider="auto")[1] in {"cpu", "cuda"}


@pytest.mark.gpu
def test_tensorrt_engine_is_built_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rap_edge.models import sha256_file
    from rap_edge.runtime import tensorrt_capability

    ok, why = tensorrt_capability()
    if not ok:
        pytest.skip(f"needs TensorRT: {why}")
    monkeypatch.setenv("RAP_EDGE_ENGINES", str(tmp_path / "engines"))
    model = _tiny_onnx(tmp_path / "t.onnx")
    sha = sha256_file(model)
    session, used = create_session(model, provider="tensorrt", model_sha256=sha)
    assert used == "tensorrt"
    session.run(None, {"images": np.zeros((1, 3, 8, 8), np.float32)})
    engines = list((tmp_path / "engines").rglob("*.engine"))
    assert engines, "no engine file was cached"
    stamp = engines[0].stat().st_mtime_ns
    create_session(model, provider="tensorrt", model_sha256=sha)[0].run(
        None, {"images": np.zeros((1, 3, 8, 8), np.float32)}
    )
    assert engines[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_cli_rebuild_index_embeds_pending_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rap_edge.cli import main
    from tests.conftest import png_bytes

    _manifest(tmp_path)
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes(1))
    mem = str(tmp_path / "mem")
    assert main(["memory", "init", mem]) == 0
    assert main(["memory", "add", "a", "--image", str(img), "--memory", mem]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "memory",
                "rebuild-index",
                "--memory",
                mem,
                "--manifest",
                str(tmp_path / "tiny.json"),
                "--provider",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "embedded 1 pending image(s) with tiny@test on cpu" in out
    assert "index of tiny@test: 1 vector(s)" in out


def test_cli_models_list_and_info_show_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rap_edge.cli import main

    (tmp_path / "store" / "onnx").mkdir(parents=True)
    _manifest(tmp_path / "store" / "onnx")
    (tmp_path / "store" / "onnx" / "broken.json").write_text("{")
    assert main(["models", "list", "--dir", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "tiny@test" in out
    assert "broken.json" in out and "unreadable" in out
    assert main(["models", "info", str(tmp_path / "store" / "onnx" / "tiny.json")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["encoder_id"] == "tiny@test" and info["preprocess"]["height"] == 8
    assert main(["models", "info", str(tmp_path / "none.json")]) == 2
