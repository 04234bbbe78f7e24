"""The one place ONNX Runtime sessions are created.

onnxruntime-gpu lists the TensorRT and CUDA providers even on a machine without a GPU and then
silently runs on the CPU, so the provider a session really got (``get_providers()[0]``) is what
gets reported, never the list that was asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from rap_edge.errors import BackendError, ModelStoreError

if TYPE_CHECKING:
    from pathlib import Path

    import onnxruntime as ort

__all__ = ["PROVIDERS", "Provider", "create_session"]

Provider = Literal["auto", "tensorrt", "cuda", "cpu"]
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_SHORT = {v: k for k, v in PROVIDERS.items()}


def create_session(path: Path, *, provider: Provider = "auto",
                   threads: int = 0) -> tuple[ort.InferenceSession, str]:
    """Open an ONNX model on the requested execution provider.

    Args:
        path: The ``.onnx`` file.
        provider: ``auto`` takes TensorRT, then CUDA, then CPU, whichever onnxruntime offers;
            a named provider must be available and must really be used.
        threads: Intra-op threads for the CPU provider (0: onnxruntime's default).

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
    options = ort.SessionOptions()
    options.log_severity_level = 3  # keep provider fallback chatter off the console
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    except Exception as err:  # onnxruntime raises several unrelated exception types
        msg = f"{path}: not a loadable ONNX model ({str(err).splitlines()[0][:200]})"
        raise ModelStoreError(msg) from err
    used = session.get_providers()[0]
    if provider != "auto" and used != PROVIDERS[provider]:
        msg = f"asked for {provider}, but onnxruntime runs {path.name} on {_SHORT.get(used, used)}"
        raise BackendError(msg)
    return session, _SHORT.get(used, used)
