"""Decoding that ends: where a small model's answer stops, decided as its pieces arrive.

A 135M model rarely stops on its own: it repeats its sentence ("The person in the picture is
the owner of the camera." seven times), starts a new "Question:", or runs to the token cap and
is cut mid-sentence. :class:`AnswerStop` reads the stream and ends the answer at the first of:

* a blank line, or a new turn: "Question:", "User:", "Assistant:", a chat-template tag;
* a sentence said before (compared without case, spaces or punctuation);
* a loop: a run of :data:`LOOP_WORDS` words that already occurred in the answer;
* ``max_sentences`` complete sentences (2 by default).

Text is released one accepted sentence at a time, so a stream never shows a sentence that is
then taken back. An unfinished last fragment (the token cap cut it) is dropped when a whole
sentence precedes it.
"""

from __future__ import annotations

import re

__all__ = ["LOOP_WORDS", "MAX_SENTENCES", "AnswerStop", "repeated_sentences", "sentences"]

MAX_SENTENCES = 2
LOOP_WORDS = 6  # a repeated run of this many words is a loop

# A new turn or a template tag: the answer is over where one begins.
_TURN = re.compile(
    r"\n\s*\n|<\||<<|>>|(?:^|(?<=[\s.!?]))(?:Question|Q|User|Human|Assistant|System|Owner"
    r"|Answer)\s*:",
)
_LEADING_ANSWER = re.compile(r"^\s*(?:Answer|A)\s*:\s*")
_ABBREV = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "e.g", "i.e", "etc", "vs"})
_BOUNDARY = re.compile(r"[.!?…]+[\"')\]]*(?=\s)")


def _norm(sentence: str) -> str:
    return " ".join(re.findall(r"\w+", sentence.lower()))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _spans(text: str) -> list[tuple[int, int, bool]]:
    """Where each sentence of ``text`` starts and ends, and whether it is finished."""
    out: list[tuple[int, int, bool]] = []
    start = 0
    for m in _BOUNDARY.finditer(text + " "):
        before = text[start : m.start()].split()
        if m.group().startswith(".") and before and before[-1].lower().strip("(\"'") in _ABBREV:
            continue
        if text[start : m.end()].strip():
            out.append((start, m.end(), m.end() < len(text)))
        start = m.end()
    if text[start:].strip():
        out.append((start, len(text), False))
    return out


def sentences(text: str) -> list[str]:
    """``text`` split into sentences (after ., !, ? or … followed by a space; not "Dr.")."""
    return [text[a:b].strip() for a, b, _ in _spans(text)]


def repeated_sentences(text: str) -> bool:
    """Whether any sentence of ``text`` is said twice (the benchmark's repetition test)."""
    seen: set[str] = set()
    for s in sentences(text):
        key = _norm(s)
        if key and key in seen:
            return True
        seen.add(key)
    return False


class AnswerStop:
    """Feed the stream's pieces; it says what to show and when the answer is over.

    Args:
        max_sentences: Complete sentences to keep (at least 1).
    """

    def __init__(self, max_sentences: int = MAX_SENTENCES) -> None:
        if max_sentences < 1:
            msg = f"max_sentences must be at least 1, got {max_sentences}"
            raise ValueError(msg)
        self.max_sentences = max_sentences
        self.accepted: list[str] = []
        self.pending = ""
        self.done = False
        self.reason = ""  # why it stopped: turn, repeat, loop, sentences or end
        self._released = 0

    def feed(self, piece: str) -> str:
        """Take one piece; return the text now released (whole accepted sentences)."""
        if self.done:
            return ""
        self.pending += piece
        if not self.accepted:
            self.pending = _LEADING_ANSWER.sub("", self.pending.lstrip(), count=1)
        turn = _TURN.search(self.pending)
        if turn is not None:
            self.pending = self.pending[: turn.start()]
            out = self._release(everything=True)
            self._stop("turn")
            return out
        out = self._release(everything=False)
        if not self.done:
            out += self._check_loop()
        return out

    def finish(self) -> str:
        """The stream ended: release what is left (a fragment after a sentence is dropped)."""
        if self.done:
            return ""
        out = self._release(everything=True)
        self._stop("end")
        return out

    def _release(self, *, everything: bool) -> str:
        """Accept the finished sentences of ``pending`` (all of it when the answer is over)."""
        spans = _spans(self.pending)
        if not everything:
            spans = [sp for sp in spans if sp[2]]  # the last one may still be being written
        out = ""
        used = 0
        for a, b, _ in spans:
            if self.done:
                break
            used = b
            sentence = self.pending[a:b].strip()
            if not self._accept(sentence, final=everything):
                break
            out += (" " if self._released else "") + sentence
            self._released += 1
            if len(self.accepted) >= self.max_sentences:
                self._stop("sentences")
        self.pending = "" if self.done or everything else self.pending[used:]
        return out

    @property
    def text(self) -> str:
        """The answer so far: the accepted sentences."""
        return " ".join(self.accepted)

    def _stop(self, reason: str) -> None:
        if not self.done:
            self.done, self.reason = True, reason

    def _accept(self, sentence: str, *, final: bool) -> bool:
        key = _norm(sentence)
        if not key:
            return True
        if any(_norm(a) == key for a in self.accepted):
            self._stop("repeat")
            return False
        words = _words(sentence)
        earlier = _words(self.text)
        if _loop_at(earlier + words, len(earlier)) is not None:
            self._stop("loop")
            return False
        if final and self.accepted and not sentence.rstrip().endswith((".", "!", "?", "…")):
            return False
        self.accepted.append(sentence)
        return True

    def _check_loop(self) -> str:
        """A loop inside the unfinished sentence ("a dog and a dog and a dog and ...")."""
        earlier = _words(self.text)
        words = _words(self.pending)
        cut = _loop_at(earlier + words, len(earlier))
        if cut is None:
            return ""
        self._stop("loop")
        keep = cut - len(earlier)  # words of the fragment before the loop repeats
        fragment = " ".join(self.pending.split()[: max(keep, 0)]).strip(" ,;:")
        self.pending = ""
        if not fragment or self.accepted:
            return ""
        self.accepted.append(fragment + ".")
        self._released += 1
        return fragment + "."


def _loop_at(words: list[str], start: int) -> int | None:
    """Where a run of LOOP_WORDS words ending at or after ``start`` repeats an earlier run."""
    n = LOOP_WORDS
    seen: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen and i + n > start and seen[gram] + n <= i:
            return i
        seen.setdefault(gram, i)
    return None
