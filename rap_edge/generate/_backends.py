"""Backends by name: ``ortgenai``, ``transformers``, ``template``, or ``auto``.

``auto`` takes the default ORT GenAI model (SmolLM2-135M INT4, built by ``make models``) when it
and ONNX Runtime GenAI are present, and the template otherwise, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.errors import InvalidInputError, ModelStoreError

if TYPE_CHECKING:
    from rap_edge.generate._worker import Backend

__all__ = ["BACKENDS", "default_llm_dir", "open_backend"]

BACKENDS = ("auto", "ortgenai", "transformers", "template")
_DEFAULT = {"ortgenai": "smollm2-135m-int4", "transformers": "smollm2-135m-hf"}


def default_llm_dir(backend: str, store: str | Path | None = None) -> Path:
    """Where ``python -m export.llm`` puts the default model for ``backend``."""
    from rap_edge.models import default_store_dir

    root = Path(store) if store is not None else default_store_dir()
    return root / "llm" / _DEFAULT[backend]


def open_backend(  # noqa: PLR0913
    name: str | None = None,
    model: str | Path | None = None,
    *,
    provider: str = "auto",
    store: str | Path | None = None,
    threads: int | None = None,
    isolate: bool = False,
    vision_onnx: str | Path | None = None,
) -> tuple[Backend, str]:
    """The backend called ``name`` (default ``$RAP_EDGE_BACKEND`` or ``auto``) and a note.

    Args:
        name: One of :data:`BACKENDS`.
        model: The model folder (default: the store's SmolLM2 for that backend).
        provider: One of :data:`rap_edge.runtime.LLM_PROVIDERS` (``auto``, ``cpu``, ``cuda``).
        store: Model store (default: as ``rap-edge models pull``).
        threads: CPU threads for the ``ortgenai`` decoder (None: every core).
        isolate: Run a model backend in a child process (:class:`ProcessBackend`): needed
            next to a frame loop, because ONNX Runtime GenAI holds the GIL while it reads a
            prompt.
        vision_onnx: For ``transformers`` with a LLaVA or Idefics3 model: a folder from
            ``rap-edge export vision-tower`` that computes the image features through ONNX
            Runtime (TensorRT or CUDA where usable) instead of torch.

    Returns:
        The backend, and one line saying what was chosen (and why, for ``auto``).

    Raises:
        InvalidInputError: an unknown name.
        ModelStoreError: a named model backend that cannot load (never silently replaced).
    """
    from rap_edge.generate._template import TemplateBackend

    name = name or os.environ.get("RAP_EDGE_BACKEND") or "auto"
    if name not in BACKENDS:
        msg = f"unknown generation backend {name!r}; choose one of {', '.join(BACKENDS)}"
        raise InvalidInputError(msg)
    if name == "template":
        return TemplateBackend(), "template: deterministic sentences"
    if name == "auto":
        folder = Path(model) if model is not None else default_llm_dir("ortgenai", store)
        try:
            backend, note = open_backend(
                "ortgenai",
                folder,
                provider=provider,
                store=store,
                threads=threads,
                isolate=isolate,
            )
        except ModelStoreError as err:
            first = str(err).splitlines()[0]
            return TemplateBackend(), f"template (no LLM: {first}; run `make models`)"
        return backend, note
    folder = Path(model) if model is not None else default_llm_dir(name, store)
    if vision_onnx is not None and name != "transformers":
        msg = (
            "--vision-onnx is for the transformers backend (a split ortgenai folder "
            "carries its own vision ONNX)"
        )
        raise InvalidInputError(msg)
    if isolate:
        from rap_edge.generate._process import ProcessBackend

        if name == "ortgenai" and not (folder / "genai_config.json").is_file():  # fail fast
            msg = f"{folder} is not an ONNX Runtime GenAI model folder (no genai_config.json)"
            raise ModelStoreError(msg)
        extra: dict[str, Any] = {} if vision_onnx is None else {"vision_onnx": str(vision_onnx)}
        proc = ProcessBackend(name, folder, provider=provider, threads=threads, **extra)
        return proc, proc.note
    if name == "ortgenai" and (folder / "rap_edge_mllm.json").is_file():  # a split VLM
        from rap_edge.generate._split import SplitVLMBackend

        split = SplitVLMBackend(folder, provider=provider, threads=threads)
        return split, (
            f"ortgenai: {folder} ({split.model_type}; vision ONNX on {split.vision_provider})"
        )
    if name == "ortgenai":
        from rap_edge.generate._ortgenai import OrtGenAIBackend

        og_backend = OrtGenAIBackend(folder, provider=provider, threads=threads)
        return og_backend, f"ortgenai: {folder} ({og_backend.model_type})"
    from rap_edge.generate._hf import TransformersBackend

    device = "auto" if provider == "auto" else provider
    hf = TransformersBackend(folder, device=device, vision_onnx=vision_onnx)
    if hf.vision is not None:
        return hf, f"transformers: {folder} (vision tower on ONNX Runtime {hf.vision.provider})"
    return hf, f"transformers: {folder}"
