"""The one place ONNX Runtime sessions are created.

onnxruntime-gpu lists the TensorRT and CUDA providers even on a machine without a GPU and then
silently runs on the CPU, so the provider a session really got (``get_providers()[0]``) is what
gets reported, never the list that was asked for.

TensorRT is used only when a capability check passes (:func:`tensorrt_capability`: the
``tensorrt`` module imports, a ``Builder`` can be created, and onnxruntime offers the provider);
``auto`` silently skips it otherwise, a request for ``tensorrt`` fails with the reason. Its
engines are cached on disk, one folder per (model hash, TensorRT version, GPU name, precision)
(:func:`engine_cache_dir`), so a second start loads the engine instead of building it.
"""

from __future__ import annotations

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
    "PROVIDERS",
    "Precision",
    "Provider",
    "create_session",
    "engine_cache_dir",
    "gpu_name",
    "tensorrt_capability",
]

Precision = Literal["fp32", "fp16"]
ENGINES_ENV = "RAP_EDGE_ENGINES"

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
        import tensorrt as trt  # type: ignore[import-not-found]  # noqa: PLC0415
    except Exception as err:  # noqa: BLE001 - a broken install raises anything
        return False, f"the tensorrt module is not importable ({type(err).__name__}: {err})"
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as err:  # noqa: BLE001 - no GPU, missing libraries, ...
        return False, f"a TensorRT Builder cannot be created ({type(err).__name__}: {err})"
    if builder is None:
        return False, "a TensorRT Builder cannot be created (no GPU?)"
    import onnxruntime as ort  # noqa: PLC0415

    if PROVIDERS["tensorrt"] not in ort.get_available_providers():
        return False, "onnxruntime has no TensorRT provider (install the gpu extra)"
    return True, f"TensorRT {trt.__version__}"


def gpu_name() -> str:
    """The GPU's name (``nvidia-smi``, else a Jetson's device-tree model), or ``unknown-gpu``."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],  # noqa: S607
                             capture_output=True, text=True, timeout=10, check=True).stdout
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


def engine_cache_dir(model_sha256: str, *, trt_version: str, gpu: str, precision: Precision,
                     root: Path | None = None) -> Path:
    """The folder caching TensorRT engines of one model for one (version, GPU, precision).

    ``root`` defaults to ``$RAP_EDGE_ENGINES``, else ``engines/`` in the user's cache folder.
    """
    if not re.fullmatch(r"[0-9a-f]{16,64}", model_sha256):
        msg = f"model hash must be hex SHA-256, got {model_sha256!r}"
        raise ModelStoreError(msg)
    if precision not in ("fp32", "fp16"):
        msg = f"precision must be fp32 or fp16, got {precision!r}"
        raise BackendError(msg)
    if root is None:
        env = os.environ.get(ENGINES_ENV)
        if env:
            root = Path(env).expanduser()
        else:
            from platformdirs import user_cache_dir  # noqa: PLC0415

            root = Path(user_cache_dir("rap-edge")) / "engines"
    slug = re.sub(r"[^a-z0-9._]+", "-", gpu.lower()).strip("-") or "unknown-gpu"
    version = re.sub(r"[^0-9A-Za-z.]+", "-", trt_version)
    return root / f"{model_sha256[:16]}-trt{version}-{slug}-{precision}"


def create_session(path: Path, *, provider: Provider = "auto",
                   threads: int = 0, model_sha256: str | None = None,
                   precision: Precision = "fp32") -> tuple[ort.InferenceSession, str]:
    """Open an ONNX model on the requested execution provider.

    Args:
        path: The ``.onnx`` file.
        provider: ``auto`` takes TensorRT, then CUDA, then CPU, whichever onnxruntime offers;
            a named provider must be available and must really be used.
        threads: Intra-op threads for the CPU provider (0: onnxruntime's default).
        model_sha256: The model file's hash, which keys the TensorRT engine cache (without
            it, TensorRT builds its engine at every start).
        precision: TensorRT precision, ``fp32`` or ``fp16``.

    Returns:
        The session and the short name of the provider it actually runs on.

    Raises:
        BackendError: if the provider is unknown, unavailable, or silently replaced.
        ModelStoreError: if the file is missing or not a loadable ONNX model.
    """
    import onnxruntime as ort  # noqa: PLC0415

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
    if trt_name in wanted:
        ok, why = tensorrt_capability()
        if not ok and provider == "tensorrt":
            msg = f"TensorRT cannot be used here: {why}"
            raise BackendError(msg)
        if not ok:  # auto: fall through to CUDA / CPU
            providers = [p for p in wanted if p != trt_name]
        else:
            trt_options: dict[str, object] = {"trt_fp16_enable": precision == "fp16"}
            if model_sha256:
                cache = engine_cache_dir(model_sha256, trt_version=why.split()[-1],
                                         gpu=gpu_name(), precision=precision)
                cache.mkdir(parents=True, exist_ok=True)
                trt_options |= {"trt_engine_cache_enable": True,
                                "trt_engine_cache_path": str(cache),
                                "trt_timing_cache_enable": True,
                                "trt_timing_cache_path": str(cache)}
            providers = [(trt_name, trt_options) if p == trt_name else p for p in wanted]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # keep provider fallback chatter off the console
    if threads:
        options.intra_op_num_threads = threads
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
