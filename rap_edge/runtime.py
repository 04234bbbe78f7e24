"""The one place ONNX Runtime sessions are created.

onnxruntime-gpu lists the TensorRT and CUDA providers even on a machine without a GPU and then
silently runs on the CPU, so the provider a session really got (``get_providers()[0]``) is what
gets reported, never the list that was asked for.

TensorRT is used only when a capability check passes (:func:`tensorrt_capability`: the
``tensorrt`` module imports, a ``Builder`` can be created, and onnxruntime offers the provider);
``auto`` silently skips it otherwise, a request for ``tensorrt`` fails with the reason. Its
engines are cached on disk, one folder per (model hash, TensorRT version, GPU name, precision)
(:func:`engine_cache_dir`), so a second start loads the engine instead of building it.

Order of preference for ``auto`` (and ``tensorrt``): an engine built ahead of time by
``rap-edge export engine`` for this model, TensorRT version and GPU ("tensorrt-engine"), then
the TensorRT provider building (and caching) its own engine ("tensorrt"), then CUDA, then CPU.
The prebuilt engine is loaded through ONNX Runtime, not a hand-written TensorRT runner: the
export writes beside ``model.engine`` a one-node ONNX model (``model_ctx.onnx``) whose
``com.microsoft.EPContext`` node has ``embed_mode=0`` and ``ep_cache_context="model.engine"``,
which the TensorRT provider deserializes instead of parsing and building (the mechanism ONNX
Runtime documents for engines built outside it, e.g. by ``trtexec``). So the caller keeps the
very same session surface (input and output names, ``run``, host/device copies, streams) and
needs no CUDA bindings; a prebuilt engine that cannot be loaded (a TensorRT the provider was not
linked against, a damaged file) is logged and skipped, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rap_edge.errors import BackendError, ModelStoreError

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "ENGINES_ENV",
    "ENGINE_FILE",
    "ENGINE_INFO",
    "ENGINE_WRAPPER",
    "PRECISIONS",
    "PROVIDERS",
    "Precision",
    "Provider",
    "create_session",
    "engine_cache_dir",
    "engine_cache_root",
    "find_engine",
    "gpu_name",
    "tensorrt_capability",
    "timing_cache_path",
]

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
ENGINES_ENV = "RAP_EDGE_ENGINES"
ENGINE_FILE = "model.engine"
"""The serialized engine ``rap-edge export engine`` writes into a cache folder."""
ENGINE_WRAPPER = "model_ctx.onnx"
"""The EPContext model beside it that ONNX Runtime's TensorRT provider loads the engine from."""
ENGINE_INFO = "engine.json"
"""What was built: ONNX hash, TensorRT version, GPU, precision, build time, profile."""

_log = logging.getLogger(__name__)

Provider = Literal["auto", "tensorrt", "cuda", "cpu"]
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_SHORT = {v: k for k, v in PROVIDERS.items()}


def tensorrt_capability() -> tuple[bool, str]:
    """Whether TensorRT engines can be built here, and a reason either way.

    ``pip install tensorrt`` cannot work on machines without NVIDIA's libraries, and
    onnxruntime-gpu lists the TensorRT provider regardless, so all three are checked: the module
    imports, a ``Builder`` can be created (it needs a GPU and the libraries), and onnxruntime
    offers the provider.
    """
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except Exception as err:  # noqa: BLE001 - a broken install raises anything
        return False, f"the tensorrt module is not importable ({type(err).__name__}: {err})"
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as err:  # noqa: BLE001 - no GPU, missing libraries, ...
        return False, f"a TensorRT Builder cannot be created ({type(err).__name__}: {err})"
    if builder is None:
        return False, "a TensorRT Builder cannot be created (no GPU?)"
    import onnxruntime as ort

    if PROVIDERS["tensorrt"] not in ort.get_available_providers():
        return False, "onnxruntime has no TensorRT provider (install the gpu extra)"
    return True, f"TensorRT {trt.__version__}"


def gpu_name() -> str:
    """The GPU's name (``nvidia-smi``, else a Jetson's device-tree model), or ``unknown-gpu``."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        if out.strip():
            return out.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        model = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode()
        if model.strip():
            return model.strip()
    except (OSError, UnicodeDecodeError):
        pass
    return "unknown-gpu"


def engine_cache_root(root: Path | None = None) -> Path:
    """``root``, else ``$RAP_EDGE_ENGINES``, else ``engines/`` in the user's cache folder."""
    if root is not None:
        return root
    env = os.environ.get(ENGINES_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("rap-edge")) / "engines"


def _slug(gpu: str) -> str:
    return re.sub(r"[^a-z0-9._]+", "-", gpu.lower()).strip("-") or "unknown-gpu"


def _version(trt_version: str) -> str:
    return re.sub(r"[^0-9A-Za-z.]+", "-", trt_version)


def engine_cache_dir(
    model_sha256: str,
    *,
    trt_version: str,
    gpu: str,
    precision: Precision,
    root: Path | None = None,
) -> Path:
    """The folder caching TensorRT engines of one model for one (version, GPU, precision).

    ``root`` defaults to ``$RAP_EDGE_ENGINES``, else ``engines/`` in the user's cache folder.
    """
    if not re.fullmatch(r"[0-9a-f]{16,64}", model_sha256):
        msg = f"model hash must be hex SHA-256, got {model_sha256!r}"
        raise ModelStoreError(msg)
    if precision not in PRECISIONS:
        msg = f"precision must be fp32, fp16 or int8, got {precision!r}"
        raise BackendError(msg)
    return (
        engine_cache_root(root)
        / f"{model_sha256[:16]}-trt{_version(trt_version)}-{_slug(gpu)}-{precision}"
    )


def timing_cache_path(*, trt_version: str, gpu: str, root: Path | None = None) -> Path:
    """The TensorRT timing cache shared by every build for one (version, GPU)."""
    return engine_cache_root(root) / f"timing-trt{_version(trt_version)}-{_slug(gpu)}.cache"


def find_engine(
    model_sha256: str,
    *,
    trt_version: str,
    gpu: str,
    precision: Precision | None = None,
    root: Path | None = None,
) -> Path | None:
    """The cache folder of a usable prebuilt engine for this model, version and GPU, or None.

    Usable: the folder holds :data:`ENGINE_FILE`, :data:`ENGINE_WRAPPER` and an
    :data:`ENGINE_INFO` whose full ONNX hash, TensorRT version and GPU match. With a
    ``precision``, only that precision; without one, the most recently built of all.
    """
    found: list[tuple[float, Path]] = []
    for p in (precision,) if precision is not None else PRECISIONS:
        folder = engine_cache_dir(
            model_sha256, trt_version=trt_version, gpu=gpu, precision=p, root=root
        )
        if not ((folder / ENGINE_FILE).is_file() and (folder / ENGINE_WRAPPER).is_file()):
            continue
        try:
            info = json.loads((folder / ENGINE_INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or (
            info.get("onnx_sha256"),
            info.get("trt_version"),
            info.get("gpu"),
            info.get("precision"),
        ) != (model_sha256, trt_version, gpu, p):
            continue
        built = info.get("built_unix")
        found.append((float(built) if isinstance(built, (int, float)) else 0.0, folder))
    return max(found)[1] if found else None


def create_session(  # noqa: PLR0913
    path: Path,
    *,
    provider: Provider = "auto",
    threads: int = 0,
    model_sha256: str | None = None,
    precision: Precision | None = None,
    prebuilt: bool = True,
) -> tuple[ort.InferenceSession, str]:
    """Open an ONNX model on the requested execution provider.

    Args:
        path: The ``.onnx`` file.
        provider: ``auto`` takes a prebuilt TensorRT engine, then TensorRT, then CUDA, then
            CPU, whichever is usable here; a named provider must be available and must really
            be used (``tensorrt`` is satisfied by a prebuilt engine too).
        threads: Intra-op threads for the CPU provider (0: onnxruntime's default).
        model_sha256: The model file's hash, which keys the TensorRT engine caches (without
            it, no prebuilt engine is looked up and TensorRT builds its engine at every start).
        precision: TensorRT precision, ``fp32``, ``fp16`` or ``int8``: the prebuilt engine
            must have it, and the TensorRT provider builds fp16 for ``fp16`` (int8 only from
            QDQ models). ``None``: the most recently built engine of any precision, else the
            provider at fp32.
        prebuilt: Look for an engine built by ``rap-edge export engine`` (default).

    Returns:
        The session and the short name of what it actually runs on: ``tensorrt-engine`` (a
        prebuilt engine), ``tensorrt``, ``cuda`` or ``cpu``.

    Raises:
        BackendError: if the provider is unknown, unavailable, or silently replaced.
        ModelStoreError: if the file is missing or not a loadable ONNX model.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "auto":
        wanted = [p for p in (PROVIDERS["tensorrt"], PROVIDERS["cuda"]) if p in available]
        wanted.append(PROVIDERS["cpu"])
    elif provider in PROVIDERS:
        if PROVIDERS[provider] not in available:
            msg = (
                f"execution provider {provider!r} is not available in this onnxruntime "
                f"(it offers {', '.join(_SHORT.get(p, p) for p in available)})"
            )
            raise BackendError(msg)
        wanted = [PROVIDERS[provider]]
    else:
        msg = f"unknown execution provider {provider!r}; use auto, tensorrt, cuda or cpu"
        raise BackendError(msg)
    if not path.is_file():
        msg = f"{path}: model file is missing"
        raise ModelStoreError(msg)
    trt_name = PROVIDERS["tensorrt"]
    providers: list[str | tuple[str, dict[str, object]]] = list(wanted)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # keep provider fallback chatter off the console
    if threads:
        options.intra_op_num_threads = threads
    if trt_name in wanted:
        ok, why = tensorrt_capability()
        if not ok and provider == "tensorrt":
            msg = f"TensorRT cannot be used here: {why}"
            raise BackendError(msg)
        if not ok:  # auto: fall through to CUDA / CPU
            providers = [p for p in wanted if p != trt_name]
        else:
            trt_version, gpu = why.split()[-1], gpu_name()
            if model_sha256 and prebuilt:
                engine = find_engine(
                    model_sha256, trt_version=trt_version, gpu=gpu, precision=precision
                )
                if engine is not None:
                    session = _open_prebuilt(engine, threads=threads)
                    if session is not None:
                        return session, "tensorrt-engine"
            trt_options: dict[str, object] = {
                "trt_fp16_enable": precision == "fp16",
                "trt_int8_enable": precision == "int8",
            }
            if model_sha256:
                cache = engine_cache_dir(
                    model_sha256, trt_version=trt_version, gpu=gpu, precision=precision or "fp32"
                )
                cache.mkdir(parents=True, exist_ok=True)
                trt_options |= {
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(cache),
                }
            providers = [(trt_name, trt_options) if p == trt_name else p for p in wanted]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises several unrelated exception types
        msg = f"{path}: not a loadable ONNX model ({str(err).splitlines()[0][:200]})"
        raise ModelStoreError(msg) from err
    used = session.get_providers()[0]
    if provider != "auto" and used != PROVIDERS[provider]:
        msg = f"asked for {provider}, but onnxruntime runs {path.name} on {_SHORT.get(used, used)}"
        raise BackendError(msg)
    return session, _SHORT.get(used, used)


def _open_prebuilt(folder: Path, *, threads: int = 0) -> ort.InferenceSession | None:
    """A session on the prebuilt engine in ``folder`` (its EPContext model), or None.

    Only the TensorRT provider can run an EPContext node, so it is the only provider asked
    for; graph optimisations are off, as ONNX Runtime advises for context models.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    wrapper = folder / ENGINE_WRAPPER
    try:
        session = ort.InferenceSession(
            str(wrapper), sess_options=options, providers=[PROVIDERS["tensorrt"]]
        )
    except Exception as err:  # noqa: BLE001 - any failure means: build instead
        _log.warning(
            "prebuilt TensorRT engine %s not used: %s",
            folder,
            str(err).splitlines()[0][:200] if str(err) else type(err).__name__,
        )
        return None
    if session.get_providers()[0] != PROVIDERS["tensorrt"]:
        _log.warning(
            "prebuilt TensorRT engine %s not used: onnxruntime runs it on %s",
            folder,
            session.get_providers()[0],
        )
        return None
    return session
