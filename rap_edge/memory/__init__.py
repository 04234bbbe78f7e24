"""The concept memory (Remember): SQLite source of truth plus derived USearch indexes.

Public API::

    from rap_edge.memory import Memory

    with Memory.init("~/my-memory") as memory:
        bo = memory.add("bo", images=["bo.png"], category="dog", info="<bo> is a Shiba Inu")
        hits = memory.search(vector, k=3, threshold=0.5)
"""

from __future__ import annotations

from rap_edge.memory._rap import export_rap, import_rap
from rap_edge.memory._store import ImageLike, Memory, NewConcept, VerifyReport, default_memory_dir
from rap_edge.memory._validate import MAX_INFO_CHARS, MAX_NAME_CHARS

__all__ = [
    "MAX_INFO_CHARS",
    "MAX_NAME_CHARS",
    "ImageLike",
    "Memory",
    "NewConcept",
    "VerifyReport",
    "default_memory_dir",
    "export_rap",
    "import_rap",
]
