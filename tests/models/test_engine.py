"""`rap-edge export engine` and the runtime's prebuilt-engine preference.

Without TensorRT (every CI machine) this checks the one-line refusal, the cache naming, the
EPContext wrapper and the engine lookup and fallback logic on fake cache folders; nothing here
claims an engine was built. The real build is the `gpu` test at the end.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.errors import BackendError, InvalidInputError
from rap_edge.models import sha256_file
from rap_edge.runtime import (
    ENGINE_FILE,
    ENGINE_INFO,
    ENGINE_WRAPPER,
    create_session,
    engine_cache_dir,
    find_engine,
    tensorrt_capability,
    timing_cache_path,
)
from tests.models.test_runtime import _manifest, _tiny_onnx

if TYPE_CHECKING:
    from pathlib import Path

onnx = pytest.importorskip("onnx")
engine = pytest.importorskip("export.engine")

TRT_OK, TRT_WHY = tensorrt_capability()
VERSION, GPU = "10.9.0", "NVIDIA Jetson Orin Nano"


def _fake_engine(
    model: Path, root: Path, *, precision: str = "fp16", built: float = 1.0, **info_over: object
) -> Path:
    """A cache folder laid out as `export engine` writes it, with a fake engine file."""
    sha = sha256_file(model)
    folder = engine_cache_dir(
        sha,
        trt_version=VERSION,
        gpu=GPU,
        precision=precision,  # type: ignore[arg-type]
        root=root,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ENGINE_FILE).write_bytes(b"not really an engine")
    engine.write_wrapper(model, folder)
    info = {
        "onnx_sha256": sha,
        "trt_version": VERSION,
        "gpu": GPU,
        "precision": precision,
        "built_unix": built,
    } | info_over
    (folder / ENGINE_INFO).write_text(json.dumps(info))
    return folder


def test_without_tensorrt_the_command_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _tiny_onnx(tmp_path / "t.onnx")
    if not TRT_OK:  # the real reason of this machine
        assert engine.main(["--onnx", str(model), "--precision", "fp16"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rap-edge: error: TensorRT is not available here: ")
        assert err.count("\n") == 1
    monkeypatch.setattr(engine, "tensorrt_capability", lambda: (False, "no GPU\n(test)"))
    assert engine.main(["--onnx", str(model), "--precision", "int8", "--calib", "x"]) == 2
    err = capsys.readouterr().err
    assert err == "rap-edge: error: TensorRT is not available here: no GPU (test)\n"
    with pytest.raises(BackendError, match="TensorRT is not available here"):
        engine.build(model, precision="fp16")
    assert not list(tmp_path.rglob(ENGINE_FILE))


@pytest.mark.skipif(TRT_OK, reason="TensorRT is usable here")
def test_runtime_auto_still_runs_on_cpu_with_a_cached_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _tiny_onnx(tmp_path / "t.onnx")
    monkeypatch.setenv("RAP_EDGE_ENGINES", str(tmp_path / "engines"))
    _fake_engine(model, tmp_path / "engines")
    session, used = create_session(model, provider="auto", model_sha256=sha256_file(model))
    assert used in {"cpu", "cuda"}
    out = session.run(None, {"images": np.ones((2, 3, 8, 8), np.float32)})[0]
    np.testing.assert_allclose(out, np.ones((2, 3)))


def test_cache_key_and_folder_naming_include_int8(tmp_path: Path) -> None:
    sha = "ab" * 32
    folders = {
        p: engine_cache_dir(
            sha, trt_version="10.3.0.30", gpu="Orin (nvgpu)", precision=p, root=tmp_path
        )
        for p in ("fp32", "fp16", "int8")
    }
    assert folders["int8"] == tmp_path / f"{sha[:16]}-trt10.3.0.30-orin-nvgpu-int8"
    assert len(set(folders.values())) == 3
    assert timing_cache_path(trt_version="10.3.0.30", gpu="Orin (nvgpu)", root=tmp_path) == (
        tmp_path / "timing-trt10.3.0.30-orin-nvgpu.cache"
    )
    with pytest.raises(BackendError, match="fp32, fp16 or int8"):
        engine_cache_dir(sha, trt_version="10", gpu="g", precision="int4")  # type: ignore[arg-type]


def test_find_engine_checks_the_info_and_takes_the_newest(tmp_path: Path) -> None:
    model = _tiny_onnx(tmp_path / "t.onnx")
    sha = sha256_file(model)
    root = tmp_path / "engines"

    def find(**kw: object) -> Path | None:
        args = {"trt_version": VERSION, "gpu": GPU, "root": root} | kw
        return find_engine(sha, **args)  # type: ignore[arg-type]

    assert find() is None
    fp16 = _fake_engine(model, root, precision="fp16", built=time.time() - 60)
    assert find() == fp16 and find(precision="fp16") == fp16
    assert find(precision="int8") is None
    int8 = _fake_engine(model, root, precision="int8", built=time.time())
    assert find() == int8  # the most recently built, when no precision is asked for
    assert find(precision="fp16") == fp16
    assert find(trt_version="10.3.0") is None and find(gpu="NVIDIA H100") is None
    (int8 / ENGINE_WRAPPER).unlink()
    assert find() == fp16  # incomplete folders are ignored
    _fake_engine(model, root, precision="fp16", onnx_sha256="cd" * 32)
    assert find() is None  # the info must name this very model
    (fp16 / ENGINE_INFO).write_text("{")
    assert find() is None


def test_wrapper_is_an_epcontext_model_with_the_models_io(tmp_path: Path) -> None:
    model = _tiny_onnx(tmp_path / "t.onnx")
    wrapper = engine.write_wrapper(model, tmp_path / "cache")
    loaded = onnx.load(str(wrapper))
    onnx.checker.check_model(loaded)
    (node,) = loaded.graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert (node.op_type, node.domain) == ("EPContext", "com.microsoft")
    assert attrs["embed_mode"] == 0 and attrs["ep_cache_context"] == ENGINE_FILE.encode()
    assert [i.name for i in loaded.graph.input] == ["images"]
    assert [o.name for o in loaded.graph.output] == ["embedding"]
    dims = loaded.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [3, 8, 8]
    import onnxruntime as ort

    # Only the TensorRT provider can run it; the CPU refuses it by name, not as malformed.
    with pytest.raises(Exception, match="EPContext"):
        ort.InferenceSession(str(wrapper), providers=["CPUExecutionProvider"])
    with pytest.raises(InvalidInputError, match="plain name"):
        engine.write_wrapper(model, tmp_path / "cache", engine_file="../x.engine")


@pytest.mark.filterwarnings("ignore:Specified provider 'TensorrtExecutionProvider'")
def test_unusable_prebuilt_engine_falls_back_and_reports_what_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Pretend TensorRT is usable: the fake engine fails to load, is logged, and is skipped."""
    import onnxruntime as ort

    from rap_edge import runtime

    model = _tiny_onnx(tmp_path / "t.onnx")
    root = tmp_path / "engines"
    monkeypatch.setenv("RAP_EDGE_ENGINES", str(root))
    folder = _fake_engine(model, root)
    real = ort.get_available_providers()
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", *real]
    )
    monkeypatch.setattr(runtime, "tensorrt_capability", lambda: (True, f"TensorRT {VERSION}"))
    monkeypatch.setattr(runtime, "gpu_name", lambda: GPU)
    with caplog.at_level(logging.WARNING, logger="rap_edge.runtime"):
        session, used = create_session(model, provider="auto", model_sha256=sha256_file(model))
    assert used == "cpu"  # this onnxruntime has no TensorRT: it said so and ran on the CPU
    assert f"prebuilt TensorRT engine {folder} not used" in caplog.text
    assert session.run(None, {"images": np.zeros((1, 3, 8, 8), np.float32)})[0].shape == (1, 3)
    with pytest.raises(BackendError, match="asked for tensorrt, but onnxruntime runs"):
        create_session(model, provider="tensorrt", model_sha256=sha256_file(model))
    # A usable engine wins over every provider and is reported as such.
    monkeypatch.setattr(runtime, "_open_prebuilt", lambda f, **_kw: ("engine session", f))
    assert create_session(model, provider="auto", model_sha256=sha256_file(model))[1] == (
        "tensorrt-engine"
    )
    assert (
        create_session(model, provider="auto", model_sha256=sha256_file(model), prebuilt=False)[1]
        == "cpu"
    )
    assert create_session(model, provider="auto")[1] == "cpu"  # no hash: no lookup


def test_profile_shapes_and_calibration_batches(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    assert engine.profile_shapes("images", (-1, 3, 8, 8), batch=(1, 4, 16)) == (
        (1, 3, 8, 8),
        (4, 3, 8, 8),
        (16, 3, 8, 8),
    )
    assert engine.profile_shapes("images", (2, 3, 8, 8), batch=(1, 4, 16)) == ((2, 3, 8, 8),) * 3
    assert engine.profile_shapes("images", (-1, 3, -1, -1), batch=(1, 1, 2), manifest=m)[2] == (
        2,
        3,
        8,
        8,
    )
    with pytest.raises(InvalidInputError, match="pass --manifest"):
        engine.profile_shapes("images", (-1, 3, -1, -1), batch=(1, 1, 2))
    with pytest.raises(InvalidInputError, match="1 <= min <= opt <= max"):
        engine.profile_shapes("images", (-1, 3, 8, 8), batch=(4, 2, 8))
    images = [np.full((5, 6, 3), i, np.uint8) for i in range(5)]
    batches = engine.calibration_batches(images, m, 2)
    assert [b.shape for b in batches] == [(2, 3, 8, 8)] * 3 and batches[0].dtype == np.float32
    np.testing.assert_allclose(batches[2][1], batches[2][0])  # the last one padded by repeats
    assert engine.set_digest(images) != engine.set_digest(images[:4])


def test_has_qdq(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    plain = _tiny_onnx(tmp_path / "t.onnx")
    assert not engine.has_qdq(plain)
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])
    dq = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])
    graph = helper.make_graph(
        [q, dq],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("z", TensorProto.INT8, [], [0]),
        ],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]),
        str(tmp_path / "q.onnx"),
    )
    assert engine.has_qdq(tmp_path / "q.onnx")


@pytest.mark.gpu
@pytest.mark.skipif(not TRT_OK, reason=f"needs TensorRT: {TRT_WHY}")
def test_engine_is_built_cached_and_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAP_EDGE_ENGINES", str(tmp_path / "engines"))
    m = _manifest(tmp_path)
    assert (
        engine.main(
            [
                "--manifest",
                str(tmp_path / "tiny.json"),
                "--precision",
                "fp16",
                "--max-batch",
                "4",
                "--opt-batch",
                "2",
                "--workspace-mb",
                "256",
            ]
        )
        == 0
    )
    (built,) = (tmp_path / "engines").glob(f"{m.onnx_sha256[:16]}-*-fp16")
    info = json.loads((built / ENGINE_INFO).read_text())
    assert info["onnx_sha256"] == m.onnx_sha256 and info["precision"] == "fp16"
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    cpu, _ = create_session(m.onnx, provider="cpu")
    want = cpu.run(None, {"images": x})[0]
    session, used = create_session(m.onnx, provider="auto", model_sha256=m.onnx_sha256)
    assert used == "tensorrt-engine"
    np.testing.assert_allclose(session.run(None, {"images": x})[0], want, atol=1e-2)
    runner = engine.EngineRunner(built / ENGINE_FILE)
    np.testing.assert_allclose(runner.run(None, {"images": x})[0], want, atol=1e-2)
    runner.close()
