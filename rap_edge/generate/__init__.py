"""Generate: RAP prompts from the retrieved concepts, answered off the frame path.

Pieces: the prompt layouts with a token budget and injection-safe concept info; the
faithful-name guard (regenerate once, then fall back); three backends chosen by name
(``ortgenai``, ``transformers``, ``template``; see :func:`open_backend`); a latest-first worker
thread that streams text; and :class:`Describer`, which decides when a frame needs words.
Heavy imports (onnxruntime_genai, torch, transformers) happen only when a backend is opened.
"""

from __future__ import annotations

from rap_edge.generate._backends import BACKENDS, default_llm_dir, open_backend
from rap_edge.generate._describe import DESCRIBE, Describer, frame_prompt
from rap_edge.generate._guard import memory_names, unfaithful_names
from rap_edge.generate._hf import TransformersBackend
from rap_edge.generate._prompt import (
    IMAGE,
    PROMPT_INFO_CHARS,
    ConceptRef,
    Prompt,
    build_prompt,
    chat_parts,
    sanitize_info,
    where,
)
from rap_edge.generate._template import TemplateBackend
from rap_edge.generate._worker import Backend, GenerationResult, GenerationWorker, Generator

__all__ = [
    "BACKENDS",
    "DESCRIBE",
    "IMAGE",
    "PROMPT_INFO_CHARS",
    "Backend",
    "ConceptRef",
    "Describer",
    "GenerationResult",
    "GenerationWorker",
    "Generator",
    "Prompt",
    "TemplateBackend",
    "TransformersBackend",
    "build_prompt",
    "chat_parts",
    "default_llm_dir",
    "frame_prompt",
    "memory_names",
    "open_backend",
    "sanitize_info",
    "unfaithful_names",
    "where",
]
