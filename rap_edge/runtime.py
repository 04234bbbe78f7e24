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

import enum
import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rap_edge.errors import BackendError, InvalidInputError, ModelStoreError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import onnxruntime as ort

__all__ = [
    "ENGINES_ENV",
    "ENGINE_FILE",
    "ENGINE_INFO",
    "ENGINE_WRAPPER",
    "LLM_PROVIDERS",
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
# Set to 1 to let ONNX Runtime's CPU worker threads spin after each run (its default). Off here:
# the pipeline runs several small models back to back (detector, landmarks, embedder), and a
# session's spinning threads took the cores from the next one (bench/objects.py --spin).
SPIN_ENV = "RAP_EDGE_ORT_SPIN"
ENGINE_FILE = "model.engine"
"""The serialized engine ``rap-edge export engine`` writes into a cache folder."""
ENGINE_WRAPPER = "model_ctx.onnx"
"""The EPContext model beside it that ONNX Runtime's TensorRT provider loads the engine from."""
ENGINE_INFO = "engine.json"
"""What was built: ONNX hash, TensorRT version, GPU, precision, build time, profile."""

_log = logging.getLogger(__name__)


class Provider(str, enum.Enum):
    """An execution provider to ask for, by its short name (a ``str``: ``"cpu"`` compares equal).

    ``auto`` picks the best one usable here (see :func:`create_session`). This is the one list
    of provider names: CLI choices, configuration checks and the LLM's subset
    (:data:`LLM_PROVIDERS`) derive from it.
    """

    AUTO = "auto"
    TENSORRT = "tensorrt"
    CUDA = "cuda"
    CPU = "cpu"

    def __str__(self) -> str:
        """The short name (``cpu``), as written on the command line."""
        return self.value

    @classmethod
    def parse(
        cls,
        value: object,
        *,
        allowed: Iterable[Provider] | None = None,
        what: str = "execution provider",
    ) -> Provider:
        """``value`` (a member or its short name) as a :class:`Provider`.

        Args:
            value: The name to check, such as ``"cuda"``.
            allowed: The members accepted here (default: all of them).
            what: What the value is, for the message.

        Raises:
            InvalidInputError: naming the allowed values, if ``value`` is not one of them.
        """
        choices = tuple(cls) if allowed is None else tuple(allowed)
        found = next(
            (p for p in choices if value is p or (isinstance(value, str) and value == p.value)),
            None,
        )
        if found is None:
            names = [p.value for p in choices]
            listed = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
            msg = f"unknown {what} {value!r}; use {listed}"
            raise InvalidInputError(msg)
        return found


LLM_PROVIDERS: tuple[Provider, ...] = tuple(p for p in Provider if p is not Provider.TENSORRT)
"""The providers a language model can ask for (ONNX Runtime GenAI and torch have no TensorRT)."""

PROVIDERS: dict[str, str] = {
    Provider.TENSORRT.value: "TensorrtExecutionProvider",
    Provider.CUDA.value: "CUDAExecutionProvider",
    Provider.CPU.value: "CPUExecutionProvider",
}
"""ONNX Runtime's name of each provider, by short name (every one but ``auto``)."""
_SHORT = {v: k for k, v in PROVIDERS.items()}


def tensorrt_capability() -> tuple[bool, str]:
    """Whether TensorRT engines can be built here, and a reason either way.

    ``pip install tensorrt`` cannot work on machines without NVIDIA's libraries, and
    onnxruntime-gpu lists the TensorRT provider regardless, so all three are checked: the module
    imports, a ``Builder`` can be created (it needs a GPU and the libraries), and onnxruntime
    offers the provider.
    """
    try:
        import tensorrt as trt
    except Exception as err:  # noqa: BLE001 - a broken install raises anything
        return False, f"the tensorrt module is not importable ({type(err).__name__}: {err})"
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as err:  # noqa: BLE001 - no GPU, missing libraries, ...
        return False, f"a TensorRT Builder cannot be created ({type(err).__name__}: {err})"
    if builder is None:
        return False, "a TensorRT Builder cannot be created (no GPU?)"
    import onnxruntime as ort

    if PROVIDERS[Provider.TENSORRT.value] not in ort.get_available_providers():
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
    provider: Provider | str = Provider.AUTO,
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

    try:
        asked = Provider.parse(provider)
    except InvalidInputError as err:  # an unusable provider is the environment's problem here
        raise BackendError(str(err)) from err
    available = ort.get_available_providers()
    if asked is Provider.AUTO:
        wanted = [
            p
            for p in (PROVIDERS[Provider.TENSORRT.value], PROVIDERS[Provider.CUDA.value])
            if p in available
        ]
        wanted.append(PROVIDERS[Provider.CPU.value])
    else:
        if PROVIDERS[asked.value] not in available:
            msg = (
                f"execution provider {asked.value!r} is not available in this onnxruntime "
                f"(it offers {', '.join(_SHORT.get(p, p) for p in available)})"
            )
            raise BackendError(msg)
        wanted = [PROVIDERS[asked.value]]
    if not path.is_file():
        msg = f"{path}: model file is missing"
        raise ModelStoreError(msg)
    trt_name = PROVIDERS[Provider.TENSORRT.value]
    providers: list[str | tuple[str, dict[str, object]]] = list(wanted)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # keep provider fallback chatter off the console
    if threads:
        options.intra_op_num_threads = threads
    if os.environ.get(SPIN_ENV, "0") != "1":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if trt_name in wanted:
        ok, why = tensorrt_capability()
        if not ok and asked is Provider.TENSORRT:
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
    if asked is not Provider.AUTO and used != PROVIDERS[asked.value]:
        msg = f"asked for {asked}, but onnxruntime runs {path.name} on {_SHORT.get(used, used)}"
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
            str(wrapper), sess_options=options, providers=[PROVIDERS[Provider.TENSORRT.value]]
        )
    except Exception as err:  # noqa: BLE001 - any failure means: build instead
        _log.warning(
            "prebuilt TensorRT engine %s not used: %s",
            folder,
            str(err).splitlines()[0][:200] if str(err) else type(err).__name__,
        )
        return None
    if session.get_providers()[0] != PROVIDERS[Provider.TENSORRT.value]:
        _log.warning(
            "prebuilt TensorRT engine %s not used: onnxruntime runs it on %s",
            folder,
            session.get_providers()[0],
        )
        return None
    return session
