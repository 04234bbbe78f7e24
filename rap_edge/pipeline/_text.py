"""Text retrieval: concepts named in a question (name or alias, whole word, any case)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rap_edge.interfaces import Concept
    from rap_edge.memory import Memory

__all__ = ["mentioned_concepts"]


def _pattern(term: str) -> re.Pattern[str]:
    # Whole word: not preceded or followed by a letter, digit or underscore. Works for names
    # that start or end with punctuation too (RAP tokens such as ``<bo>``).
    return re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.IGNORECASE)


def mentioned_concepts(text: str, memory: Memory) -> list[Concept]:
    """Concepts whose name or an alias occurs in ``text`` as a whole word, in order of mention.

    Longer names win over shorter ones inside them ("Anna Maria" before "Anna").
    """
    found: list[tuple[int, Concept]] = []
    taken: list[tuple[int, int]] = []
    terms = sorted(
        ((t, c) for c in memory.list_concepts() for t in (c.name, *c.aliases) if t),
        key=lambda tc: -len(tc[0]),
    )
    seen: set[str] = set()
    for term, concept in terms:
        for m in _pattern(term).finditer(text):
            span = (m.start(), m.end())
            if any(s < span[1] and span[0] < e for s, e in taken):
                continue
            taken.append(span)
            if concept.id not in seen:
                seen.add(concept.id)
                found.append((m.start(), concept))
    return [c for _, c in sorted(found, key=lambda pc: pc[0])]
