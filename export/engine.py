"""Build a TensorRT engine of an ONNX model (fp32, fp16 or int8) into the engine cache.

The engine is built with the TensorRT Python API (``Builder``, ``OnnxParser``, a workspace limit
and a timing cache shared by every build for this TensorRT version and GPU) and stored where the
runtime looks first (``rap_edge.runtime.engine_cache_dir``: keyed by ONNX hash, TensorRT
version, GPU name and precision)::

    <engines>/<hash16>-trt<version>-<gpu>-<precision>/
        model.engine      the serialized engine
        model_ctx.onnx    a one-node EPContext model (embed_mode 0) through which ONNX
                          Runtime's TensorRT provider loads model.engine without rebuilding
        engine.json       ONNX hash, TensorRT version, GPU, precision, build time, profile

INT8: a model with QuantizeLinear/DequantizeLinear nodes (``python -m export.quantize`` writes
``*.int8-qdq.onnx``) is built with explicit quantization; any other model needs ``--calib SET``
(a set collected by ``rap-edge calibrate collect``), preprocessed as the model's manifest says
and fed to an entropy calibrator (``IInt8EntropyCalibrator2``) whose cache is kept in
``calibration/cache/<onnx-sha256>.calib`` (reused while the set is unchanged).

The batch dimension is dynamic: one optimisation profile, ``--min-batch``/``--opt-batch``/
``--max-batch``; the other input dimensions come from the ONNX (or the manifest's preprocess
size when the ONNX leaves them open). Without a usable TensorRT the command says so in one line
and exits 2.

Usage:
    rap-edge export engine --manifest <store>/onnx/mobilenetv2.json --precision fp16
    rap-edge export engine --onnx <store>/onnx/mobilenetv2.onnx --precision int8 --calib kitchen
    python -m export.engine --onnx <store>/onnx/dlib_resnet.int8-qdq.onnx --precision int8
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export._common import command_main
from rap_edge.errors import BackendError, InvalidInputError, RapEdgeError
from rap_edge.runtime import (
    ENGINE_FILE,
    ENGINE_INFO,
    ENGINE_WRAPPER,
    engine_cache_dir,
    engine_cache_root,
    gpu_name,
    tensorrt_capability,
    timing_cache_path,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from rap_edge.models import ModelManifest

CALIBRATION_CACHE = Path(__file__).resolve().parent.parent / "calibration" / "cache"
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


# -- pieces that need no TensorRT (tested on any machine) ---------------------------------------


def has_qdq(onnx_path: Path) -> bool:
    """Whether the model is explicitly quantized (has Quantize/DequantizeLinear nodes)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            if node.op_type in QDQ_OPS:
                return True
            graphs += [a.g for a in node.attribute if a.HasField("g")]
    return False


def write_wrapper(
    onnx_path: Path,
    folder: Path,
    *,
    engine_file: str = ENGINE_FILE,
    hardware_architecture: str | None = None,
) -> Path:
    """Write ``folder/model_ctx.onnx``: one EPContext node that points at ``engine_file``.

    The node's inputs and outputs are the ONNX model's own graph inputs and outputs (names,
    element types, shapes with their symbolic dimensions), which are the engine's I/O tensors
    (TensorRT's ONNX parser keeps the names), so a session on the wrapper is a drop-in for a
    session on the model. ``embed_mode=0``: the engine stays a separate file, referenced by a
    relative path in the same folder, as ONNX Runtime requires.
    """
    import onnx
    from onnx import helper

    if Path(engine_file).name != engine_file:
        msg = f"engine file {engine_file!r} must be a plain name inside {folder}"
        raise InvalidInputError(msg)
    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    attrs: dict[str, Any] = {
        "embed_mode": 0,
        "ep_cache_context": engine_file,
        "source": "TensorrtExecutionProvider",
    }
    if hardware_architecture:
        attrs["hardware_architecture"] = hardware_architecture
    node = helper.make_node(
        "EPContext",
        [i.name for i in inputs],
        [o.name for o in outputs],
        name="rap_edge_trt_engine",
        domain="com.microsoft",
        **attrs,
    )
    graph = helper.make_graph([node], "rap_edge_trt_engine_wrapper", inputs, outputs)
    wrapper = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        producer_name="rap-edge export engine",
    )
    wrapper.ir_version = min(model.ir_version or 9, 10) if model.ir_version else 9
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / ENGINE_WRAPPER
    tmp = out.with_suffix(".tmp")
    onnx.save(wrapper, str(tmp))
    tmp.replace(out)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def profile_shapes(
    name: str,
    shape: Sequence[int],
    *,
    batch: tuple[int, int, int],
    manifest: ModelManifest | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one input: dim 0 is the batch, other open dims from the manifest.

    Raises:
        InvalidInputError: if the batch sizes are not 1 <= min <= opt <= max, or a non-batch
            dimension is open and no manifest says what it is.
    """
    lo, opt, hi = batch
    if not 1 <= lo <= opt <= hi:
        msg = f"batch sizes must satisfy 1 <= min <= opt <= max, got {lo}/{opt}/{hi}"
        raise InvalidInputError(msg)
    dims = [int(d) for d in shape]
    if not dims:
        msg = f"input {name!r} is a scalar; there is no batch dimension to profile"
        raise InvalidInputError(msg)
    rest = dims[1:]
    if any(d < 0 for d in rest):
        if manifest is None or len(rest) != 3:  # noqa: PLR2004 - image inputs: C, H, W
            msg = (
                f"input {name!r} has open dimensions {dims} besides the batch; pass "
                "--manifest so that its preprocess size fills them"
            )
            raise InvalidInputError(msg)
        p = manifest.preprocess
        full = [3, p.height, p.width] if p.layout == "NCHW" else [p.height, p.width, 3]
        rest = [f if d < 0 else d for d, f in zip(rest, full, strict=True)]
    if dims[0] >= 0:  # a fixed batch: the profile can only be that size
        return (dims[0], *rest), (dims[0], *rest), (dims[0], *rest)
    return (lo, *rest), (opt, *rest), (hi, *rest)


def set_digest(images: Sequence[np.ndarray]) -> str:
    """A digest of calibration images (which keys whether a calibration cache is still valid)."""
    h = hashlib.sha256()
    for img in images:
        h.update(str(img.shape).encode())
        h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def calibration_batches(
    images: Sequence[np.ndarray], manifest: ModelManifest, batch: int
) -> list[np.ndarray]:
    """Preprocessed float32 batches of exactly ``batch`` images (the last padded by repeats)."""
    from rap_edge.models import preprocess

    if not images:
        msg = "the calibration set has no images"
        raise InvalidInputError(msg)
    out = []
    for start in range(0, len(images), batch):
        chunk = list(images[start : start + batch])
        chunk += [chunk[i % len(chunk)] for i in range(batch - len(chunk))]
        out.append(np.ascontiguousarray(preprocess(chunk, manifest), dtype=np.float32))
    return out


# -- CUDA memory without a hard dependency -----------------------------------------------------


class _Device:
    """Device buffers and a stream through cuda-python, else torch.cuda (whichever imports)."""

    def __init__(self) -> None:
        self._cudart: Any = None
        self._torch: Any = None
        try:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                from cuda import cudart
            self._cudart = cudart
            self.stream = int(self._check(cudart.cudaStreamCreate()))
        except ImportError:
            try:
                import torch
            except ImportError as err:
                msg = (
                    "device buffers need cuda-python (pip install cuda-python) or a CUDA "
                    "build of torch"
                )
                raise BackendError(msg) from err
            if not torch.cuda.is_available():
                msg = "device buffers need cuda-python or a CUDA build of torch"
                raise BackendError(msg) from None
            self._torch = torch
            self._stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
            self.stream = int(self._stream.cuda_stream)
        self._held: dict[int, Any] = {}

    def _check(self, result: Any) -> Any:  # noqa: ANN401 - cuda-python returns tuples
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            msg = f"CUDA call failed: {err}"
            raise BackendError(msg)
        return rest[0] if len(rest) == 1 else rest

    def alloc(self, nbytes: int) -> int:
        nbytes = max(int(nbytes), 1)
        if self._cudart is not None:
            ptr = int(self._check(self._cudart.cudaMalloc(nbytes)))
            self._held[ptr] = nbytes
            return ptr
        t = self._torch.empty(nbytes, dtype=self._torch.uint8, device="cuda")
        self._held[int(t.data_ptr())] = t
        return int(t.data_ptr())

    def upload(self, ptr: int, array: np.ndarray) -> None:
        host = np.ascontiguousarray(array)
        if self._cudart is not None:
            kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(
                self._cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream)
            )
            self.synchronize()  # host memory is pageable and may go away
            return
        src = self._torch.from_numpy(host.view(np.uint8).reshape(-1))
        self._held[ptr][: host.nbytes].copy_(src)

    def download(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        if self._cudart is not None:
            kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(
                self._cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, kind, self.stream)
            )
            self.synchronize()
            return out
        self.synchronize()
        out.reshape(-1).view(np.uint8)[:] = self._held[ptr][: out.nbytes].cpu().numpy()
        return out

    def synchronize(self) -> None:
        if self._cudart is not None:
            self._check(self._cudart.cudaStreamSynchronize(self.stream))
        else:
            self._stream.synchronize()

    def close(self) -> None:
        if self._cudart is not None:
            for ptr in self._held:
                self._cudart.cudaFree(ptr)
            self._cudart.cudaStreamDestroy(self.stream)
        self._held.clear()


class EngineRunner:
    """Runs a serialized engine with TensorRT 10's ``execute_async_v3`` (no ONNX Runtime).

    Same call surface as an ONNX Runtime session: ``run(output_names or None, {input: array})``
    returns a list of arrays. Used by ``bench/gpu_check.py`` to time the raw engine, and by
    the GPU tests for parity; the runtime itself loads engines through ONNX Runtime (see
    :mod:`rap_edge.runtime`). Buffers are reallocated only when a shape grows.
    """

    def __init__(self, engine_path: Path) -> None:
        import tensorrt as trt

        self._trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        self._runtime = trt.Runtime(logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            msg = f"{engine_path}: TensorRT cannot deserialize this engine (other version/GPU?)"
            raise BackendError(msg)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self._device = _Device()
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            ptr = self._device.alloc(nbytes)
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(
        self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]
    ) -> list[np.ndarray]:
        trt = self._trt
        for name in self.inputs:
            if name not in feeds:
                msg = f"missing input {name!r} (the engine takes {self.inputs})"
                raise InvalidInputError(msg)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            host = np.ascontiguousarray(feeds[name], dtype=dtype)
            ptr = self._buffer(name, host.nbytes)
            self._device.upload(ptr, host)
            self.context.set_input_shape(name, tuple(host.shape))
            self.context.set_tensor_address(name, ptr)
        shapes: dict[str, tuple[int, ...]] = {}
        for name in self.outputs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shapes[name] = shape
            ptr = self._buffer(name, int(np.prod(shape)) * dtype.itemsize)
            self.context.set_tensor_address(name, ptr)
        if not self.context.execute_async_v3(self._device.stream):
            msg = "TensorRT execute_async_v3 failed"
            raise BackendError(msg)
        wanted = list(output_names) if output_names else self.outputs
        return [
            self._device.download(
                self._buffers[n][0],
                shapes[n],
                np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))),
            )
            for n in wanted
        ]

    def close(self) -> None:
        self._device.close()


def _calibrator(trt: Any, batches: list[np.ndarray], cache: Path, digest: str) -> Any:  # noqa: ANN401
    """An ``IInt8EntropyCalibrator2`` over ``batches`` with its cache in ``cache``."""

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            self._device = _Device()
            self._ptr = self._device.alloc(batches[0].nbytes)
            self.used = 0

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:  # noqa: ARG002
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._device.upload(self._ptr, batch)
            self.used += 1
            return [self._ptr]

        def read_calibration_cache(self) -> bytes | None:
            meta = cache.with_suffix(".calib.json")
            try:
                if json.loads(meta.read_text())["set_digest"] == digest:
                    return cache.read_bytes()
            except (OSError, ValueError, KeyError, TypeError):
                pass
            return None

        def write_calibration_cache(self, data: Any) -> None:  # noqa: ANN401 - IHostMemory
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(memoryview(data)))
            cache.with_suffix(".calib.json").write_text(
                json.dumps(
                    {
                        "set_digest": digest,
                        "batches": len(batches),
                        "batch": int(batches[0].shape[0]),
                    }
                )
                + "\n"
            )

    return Calibrator()


# -- the build ---------------------------------------------------------------------------------


def build(
    onnx_path: Path,
    *,
    precision: str,
    manifest: ModelManifest | None = None,
    calib: str | None = None,
    workspace_mb: int = 1024,
    batch: tuple[int, int, int] = (1, 4, 16),
    cache_root: Path | None = None,
    calibration_cache: Path = CALIBRATION_CACHE,
    force: bool = False,
    say: Callable[[str], object] = print,
) -> Path:
    """Build (or find) the engine of ``onnx_path`` at ``precision``; returns its cache folder.

    Raises:
        BackendError: if TensorRT is not usable here or the build fails.
        InvalidInputError: for bad options (INT8 without QDQ nodes or ``calib``, ...).
    """
    ok, why = tensorrt_capability()
    if not ok:
        raise BackendError(f"TensorRT is not available here: {why}")
    import tensorrt as trt

    if not onnx_path.is_file():
        raise InvalidInputError(f"{onnx_path}: no such ONNX file")
    digest = _sha256(onnx_path)
    if manifest is not None and manifest.onnx_sha256 and manifest.onnx_sha256 != digest:
        raise InvalidInputError(f"{onnx_path}: does not match the SHA-256 in {manifest.path}")
    version, gpu = trt.__version__, gpu_name()
    folder = engine_cache_dir(
        digest,
        trt_version=version,
        gpu=gpu,
        precision=precision,  # type: ignore[arg-type]
        root=cache_root,
    )
    if not force and (folder / ENGINE_FILE).is_file() and (folder / ENGINE_INFO).is_file():
        say(f"{folder}: engine already built (use --force to rebuild)")
        write_wrapper(onnx_path, folder)
        return folder
    qdq = has_qdq(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    major = int(version.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # noqa: PLR2004
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise BackendError(f"{onnx_path}: TensorRT cannot parse it ({errors[:400]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    timing = timing_cache_path(trt_version=version, gpu=gpu, root=cache_root)
    blob = timing.read_bytes() if timing.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    shapes: dict[str, dict[str, list[int]]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        lo, opt, hi = profile_shapes(
            tensor.name, tuple(tensor.shape), batch=batch, manifest=manifest
        )
        profile.set_shape(tensor.name, lo, opt, hi)
        shapes[tensor.name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
    config.add_optimization_profile(profile)
    quantization = None
    calibration: dict[str, Any] | None = None
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        int8_flag = getattr(trt.BuilderFlag, "INT8", None)  # gone where only QDQ is left
        if int8_flag is not None:
            config.set_flag(int8_flag)
        if qdq:
            quantization = "qdq"
            if calib:
                say("the model has QDQ nodes: its own scales are used, --calib is ignored")
        else:
            if not calib:
                raise InvalidInputError(
                    f"{onnx_path.name} has no QDQ nodes: an INT8 engine needs --calib SET (see "
                    "`rap-edge calibrate collect`) or a QDQ model (`python -m export.quantize`)"
                )
            if manifest is None:
                msg = (
                    "INT8 calibration needs the model's manifest for preprocessing: pass "
                    "--manifest, or keep MODEL.json beside MODEL.onnx"
                )
                raise InvalidInputError(msg)
            if not hasattr(config, "int8_calibrator"):
                raise BackendError(
                    f"TensorRT {version} has no implicit INT8 calibration; "
                    "build from a QDQ model (python -m export.quantize)"
                )
            from rap_edge.calibsets import read_set

            images = read_set(calib)
            batches = calibration_batches(
                images,
                manifest,
                shapes[manifest.input_name]["opt"][0]
                if manifest.input_name in shapes
                else batch[1],
            )
            cache = calibration_cache / f"{digest}.calib"
            calibrator = _calibrator(trt, batches, cache, set_digest(images))
            config.int8_calibrator = calibrator
            config.set_calibration_profile(profile)
            quantization = "calibrator"
            calibration = {"set": str(calib), "frames": len(images), "cache": str(cache)}
    say(
        f"building {precision} engine of {onnx_path.name} with TensorRT {version} on {gpu} "
        f"(workspace {workspace_mb} MiB, batch {batch[0]}/{batch[1]}/{batch[2]}"
        + (f", INT8 by {quantization}" if quantization else "")
        + ") ..."
    )
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT could not build an engine of {onnx_path} (see its log)")
    seconds = time.monotonic() - started
    timing.parent.mkdir(parents=True, exist_ok=True)
    timing.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    folder.mkdir(parents=True, exist_ok=True)
    engine = folder / ENGINE_FILE
    tmp = engine.with_suffix(".tmp")
    tmp.write_bytes(bytes(memoryview(serialized)))
    tmp.replace(engine)
    write_wrapper(onnx_path, folder)
    now = time.time()
    info = {
        "onnx": str(onnx_path.resolve()),
        "onnx_sha256": digest,
        "trt_version": version,
        "gpu": gpu,
        "precision": precision,
        "quantization": quantization,
        "calibration": calibration,
        "profile": shapes,
        "workspace_mb": workspace_mb,
        "built": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "built_unix": now,
        "build_seconds": round(seconds, 2),
        "engine_sha256": _sha256(engine),
        "engine_bytes": engine.stat().st_size,
        "wrapper": ENGINE_WRAPPER,
    }
    (folder / ENGINE_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    say(f"wrote {engine} ({engine.stat().st_size / 1e6:.1f} MB in {seconds:.1f} s)")
    return folder


# -- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m export.engine`` and ``rap-edge export engine``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--onnx",
        type=Path,
        help="the ONNX model (its MODEL.json beside it, if "
        "any, gives preprocessing for --calib and open input sizes)",
    )
    src.add_argument("--manifest", type=Path, help="the model's manifest (instead of --onnx)")
    parser.add_argument(
        "--precision",
        default="fp16",
        choices=["fp32", "fp16", "int8"],
        help="engine precision (default fp16; int8 from QDQ nodes or --calib)",
    )
    parser.add_argument(
        "--calib",
        metavar="SET",
        help="calibration set for INT8 of a model without QDQ nodes: a folder "
        "from `rap-edge calibrate collect`, or NAME for calibration/sets/NAME",
    )
    parser.add_argument(
        "--workspace-mb",
        type=int,
        default=1024,
        help="TensorRT workspace limit in MiB (default 1024; less on a Jetson)",
    )
    parser.add_argument("--min-batch", type=int, default=1, help="smallest batch (default 1)")
    parser.add_argument(
        "--opt-batch", type=int, default=4, help="batch TensorRT tunes for (default 4)"
    )
    parser.add_argument("--max-batch", type=int, default=16, help="largest batch (default 16)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="engine cache root (default $RAP_EDGE_ENGINES, else the user cache)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild an engine already cached")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def run(args: argparse.Namespace) -> int:
    """Build as ``args`` say; 0 built (or found), 1 bad input, 2 no TensorRT or a failed build."""
    ok, why = tensorrt_capability()
    if not ok:
        print(
            f"rap-edge: error: TensorRT is not available here: {_one_line(why)}", file=sys.stderr
        )
        return 2
    from rap_edge.models import load_manifest

    try:
        manifest = None
        if args.manifest is not None:
            manifest = load_manifest(args.manifest)
            onnx_path = manifest.onnx
        else:
            onnx_path = args.onnx
            beside = onnx_path.with_suffix(".json")
            if beside.is_file():
                manifest = load_manifest(beside)
                if manifest.onnx.resolve() != onnx_path.resolve():
                    manifest = None  # a JSON of something else
        folder = build(
            onnx_path,
            precision=args.precision,
            manifest=manifest,
            calib=args.calib,
            workspace_mb=args.workspace_mb,
            batch=(args.min_batch, args.opt_batch, args.max_batch),
            cache_root=args.cache_dir,
            force=args.force,
        )
    except RapEdgeError as err:
        print(f"rap-edge: error: {_one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    print(f"engine cache: {folder} (root {engine_cache_root(args.cache_dir)})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
