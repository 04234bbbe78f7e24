"""Faithful names: every name in a generated text must be one the retriever returned.

Two kinds of unfaithful names are caught: a concept of the memory that was *not* retrieved for
this frame (whole word, any case), and an invented proper name: a capitalised word that is
neither an allowed name's word nor a common capitalised word; at the start of a sentence, where
every word is capitalised, only words outside a list of common sentence openers count.
Capitalised words that occur in the prompt's own data (the kept concepts' info, the question)
were given to the model, not invented, so they pass (a memory name that was not retrieved is
still flagged wherever it appears). A name the question asked about that is *not* in view may
only appear in a sentence with a negation ("I do not see Joe"): a small model otherwise puts
it in the picture. The rule errs towards flagging: a false alarm costs a
retry or the template answer, a missed invented name would be said to the user.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rap_edge.memory import Memory

__all__ = ["WORLD", "memory_names", "unfaithful_names"]

# Capitalised words that are not names (after the first word of a sentence).
_OPENERS = frozenset(
    {
        "The",
        "A",
        "An",
        "This",
        "That",
        "These",
        "Those",
        "There",
        "Here",
        "It",
        "Its",
        "He",
        "She",
        "They",
        "We",
        "You",
        "Your",
        "My",
        "Our",
        "His",
        "Her",
        "Their",
        "In",
        "On",
        "At",
        "By",
        "With",
        "Without",
        "For",
        "From",
        "To",
        "Of",
        "And",
        "But",
        "Or",
        "So",
        "Also",
        "Then",
        "Now",
        "Next",
        "Both",
        "Each",
        "All",
        "No",
        "Nobody",
        "Nothing",
        "Someone",
        "Something",
        "Somebody",
        "Anyone",
        "One",
        "Two",
        "Three",
        "Yes",
        "Sure",
        "Sorry",
        "As",
        "If",
        "When",
        "While",
        "Who",
        "What",
        "Where",
        "Which",
        "How",
        "Why",
        "Is",
        "Are",
        "Do",
        "Does",
        "Can",
        "I",
        "Not",
        "Only",
        "Maybe",
        "Perhaps",
        "Behind",
        "Near",
        "Left",
        "Right",
        "Above",
        "About",  # "About Savage: ..." (rejected on the description benchmark's calibration split)
        "After",
        "Before",
        "Below",
        "Under",
        "Over",
        "Currently",
        "Today",
        "Please",
        "Hello",
        "Hi",
    }
)
_COMMON = frozenset(
    {
        "I",
        "I'm",
        "I've",
        "I'd",
        "I'll",
        "OK",
        "Yes",
        "No",
        "Mr",
        "Mrs",
        "Ms",
        "Dr",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
        "English",
        "TV",
        "Info",
        "Name",
        "Category",
        "Where",
        "Question",
        "Answer",
        "Someone",
        "Something",
    }
)


# Common world words: places, peoples and languages, holidays. True context ("a former
# president of the United States") is not an invented name; a memory name that was not
# retrieved is still flagged wherever it appears, whatever this list holds.
_WORLD = """
    Africa America Americas Antarctica Arctic Asia Atlantic Australia Europe Oceania Pacific
    Mediterranean Caribbean Middle East West North South Western Eastern Northern Southern
    United States Kingdom Nations Union Republic Emirates Kingdom UK USA US EU UN
    Afghanistan Argentina Austria Bangladesh Belgium Brazil Canada Chile China Colombia Cuba
    Czech Denmark Egypt Ethiopia Finland France Germany Ghana Greece Hungary India Indonesia
    Iran Iraq Ireland Israel Italy Jamaica Japan Kenya Korea Mexico Morocco Nepal Netherlands
    Holland Nigeria Norway Pakistan Peru Philippines Poland Portugal Romania Russia Scotland
    Wales England Britain Spain Sweden Switzerland Syria Taiwan Thailand Turkey Ukraine
    Vietnam Zealand Hawaii Alaska California Texas Florida Chicago Boston Washington York
    London Berlin Rome Madrid Tokyo Beijing Moscow Toronto Dublin Amsterdam
    Hollywood Illinois Ohio Michigan Massachusetts
    American Americans African Asian European British English French German Italian Spanish
    Chinese Japanese Korean Indian Mexican Canadian Australian Russian Irish Scottish Dutch
    Swedish Greek Polish Portuguese Brazilian Arabic Hebrew Latin Christian Muslim Jewish
    Christmas Easter Halloween Thanksgiving Ramadan Hanukkah Diwali Valentine New Year
    Earth Moon Sun God Internet Olympics Oscar Oscars Grammy Grammys NBA NFL FIFA Congress
    Senate White House President Vice Prime Minister Queen King Prince Princess
"""
WORLD = frozenset(_WORLD.split())


def memory_names(memory: Memory | None) -> list[str]:
    """Every name and alias in ``memory`` (the guard's ``known`` names; none without one)."""
    if memory is None:
        return []
    return [n for c in memory.list_concepts() for n in (c.name, *c.aliases)]


def _mentions(text: str, term: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.IGNORECASE) is not None


_NEGATION = re.compile(
    r"\b(?:not|no|nobody|none|neither|nor|never|cannot|without)\b|n't\b", re.IGNORECASE
)


def unfaithful_names(  # noqa: PLR0913
    text: str,
    allowed: Iterable[str],
    known: Iterable[str] = (),
    context: str = "",
    absent: Iterable[str] = (),
    *,
    world: bool = True,
) -> list[str]:
    """Names in ``text`` that the retriever did not return, in order of first appearance.

    Args:
        text: Generated text.
        allowed: Names (and aliases) of the retrieved concepts.
        known: Every name and alias in the memory (those not allowed are flagged wherever
            they appear).
        context: Text the model was given (concept info, the question): its words pass.
        absent: Allowed names that are not in view: flagged in a sentence without negation.
        world: Let common world words pass (:data:`WORLD`: places, peoples, languages,
            days, months, holidays); False is the guard as it was before.
    """
    allowed = list(allowed)
    allowed_l = {a.lower() for a in allowed if a}
    allowed_words = {w.lower() for a in allowed for w in re.findall(r"[\w'-]+", a)}
    allowed_words |= {w.lower() for w in re.findall(r"[\w'-]+", context)}
    bad: list[str] = [k for k in known if k and k.lower() not in allowed_l and _mentions(text, k)]
    sentences = re.split(r"(?<=[.!?:;])\s+|\n+", text)
    for name in absent:
        if name and any(_mentions(s, name) and not _NEGATION.search(s) for s in sentences):
            bad.append(name)
    for sentence in sentences:
        words = re.findall(r"[A-Za-z][\w'-]*", sentence)
        for i, w in enumerate(words):
            if (
                w[0].isupper()
                and w.lower() not in allowed_words
                and w not in _COMMON
                and not (world and w in WORLD)
                and not (i == 0 and w in _OPENERS)
                and w not in bad
                and not any(w.lower() == b.lower() for b in bad)
            ):
                bad.append(w)
    return bad
