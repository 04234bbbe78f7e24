"""The ``template`` backend: deterministic sentences from the recognitions; always available.

It never invents a name (it only prints the prompt's kept concepts), so it is also the
fallback when a model's answer fails the faithful-name guard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rap_edge.generate._prompt import at

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rap_edge.generate._prompt import Prompt

__all__ = ["TemplateBackend"]


_PEOPLE = frozenset({"person", "people", "face", "human"})


class TemplateBackend:
    """Sentences, not a model: ``generate`` yields them word by word like a token stream."""

    name = "template"

    def generate(self, prompt: Prompt, *, max_tokens: int = 256) -> Iterator[str]:
        """The answer for ``prompt``, as a stream of text pieces."""
        words = self.answer(prompt).split(" ")
        for i, w in enumerate(words[:max_tokens]):
            yield w if i == 0 else " " + w

    def close(self) -> None:
        """Nothing to release (the template holds no model)."""

    @staticmethod
    def answer(prompt: Prompt) -> str:
        """The whole answer (what :meth:`generate` streams)."""
        seen = {c.name.lower(): c for c in prompt.concepts}
        parts: list[str] = []
        for name in prompt.asked:
            c = seen.get(name.lower())
            if c is None:
                parts.append(f"I do not see {name} here.")
            else:
                place = f" ({c.where})" if c.where else ""
                parts.append(f"Yes, {c.name} is here{place}.")
        if prompt.concepts:
            listed = [
                c.name
                + ("" if c.category in _PEOPLE or not c.category else f", your {c.category}")
                + (f", {at(c.where)}" if c.where else "")
                for c in prompt.concepts
            ]
            parts.append("I can see " + "; ".join(listed) + ".")
            for c in prompt.concepts:
                from rap_edge.generate._ground import defuse_info

                info = defuse_info(c.info)[0]
                if info:
                    from rap_edge.generate._prompt import sanitize_info

                    info = sanitize_info(info, 160)
                    end = "" if info.endswith((".", "!", "?", "…")) else "."
                    parts.append(f"{c.name}: {info}{end}")
        else:
            parts.append("I do not recognise anyone or anything I know here.")
        if prompt.unknown:
            parts.append(
                f"There {'is' if prompt.unknown == 1 else 'are'} also "
                f"{prompt.unknown} person{'s' if prompt.unknown != 1 else ''} "
                "I do not know."
            )
        return " ".join(parts)
