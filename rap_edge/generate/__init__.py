"""Generate: RAP prompts from the retrieved concepts, answered off the frame path.

So far: the prompt layouts with a token budget and injection-safe concept info, the
faithful-name guard (regenerate once, then fall back), the ``template`` backend, and a
latest-first worker thread that streams text. Model backends (ONNX Runtime GenAI,
transformers) are still to come.
"""

from __future__ import annotations

from rap_edge.generate._guard import unfaithful_names
from rap_edge.generate._prompt import (
    MAX_INFO_CHARS,
    ConceptRef,
    Prompt,
    build_prompt,
    sanitize_info,
    where,
)
from rap_edge.generate._template import TemplateBackend
from rap_edge.generate._worker import Backend, GenerationResult, GenerationWorker, Generator

__all__ = [
    "MAX_INFO_CHARS",
    "Backend",
    "ConceptRef",
    "GenerationResult",
    "GenerationWorker",
    "Generator",
    "Prompt",
    "TemplateBackend",
    "build_prompt",
    "sanitize_info",
    "unfaithful_names",
    "where",
]
