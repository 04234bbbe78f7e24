"""Decoding that ends: new turns, repeats, loops and the sentence cap stop a model's answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from rap_edge.generate import ConceptRef, Generator, build_prompt
from rap_edge.generate._stop import AnswerStop, repeated_sentences

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rap_edge.generate import Prompt


def stop_on(text: str, step: int = 3, max_sentences: int = 2) -> tuple[str, str, str]:
    """(what was streamed, the answer, why it stopped), fed in ``step``-character pieces."""
    st = AnswerStop(max_sentences)
    shown = ""
    for i in range(0, len(text), step):
        shown += st.feed(text[i : i + step])
        if st.done:
            break
    shown += st.finish()
    return shown, st.text, st.reason


@pytest.mark.parametrize("step", [1, 3, 7, 50])
@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("The person in the picture is the owner of the camera. " * 7, None),
        ("Barack is on the left. He plays basketball. He likes tea.", None),
        ("Barack is on the left.\n\nQuestion: who is this?", "Barack is on the left."),
        ("Barack is on the left. Question: who is it", "Barack is on the left."),
        ("Barack is here.<|im_end|> user", "Barack is here."),
        ("Answer: Barack is here. User: thanks", "Barack is here."),
        ("Barack is here. He is nice and", "Barack is here."),
        ("Dr. Ana is here. She waves.", "Dr. Ana is here. She waves."),
    ],
)
def test_answers_end_where_they_should(step: int, text: str, answer: str | None) -> None:
    shown, final, _ = stop_on(text, step)
    assert shown == final  # the stream never shows what is then taken back
    assert not repeated_sentences(final)
    if answer is not None:
        assert final == answer
    else:
        assert final.count(".") <= 2 and len(final) < len(text)


def test_a_sentence_said_twice_is_cut_at_its_repeat() -> None:
    _, final, reason = stop_on("Bo is a dog. Bo is a dog. ", 4, max_sentences=5)
    assert final == "Bo is a dog." and reason in {"repeat", "loop"}


def test_a_loop_inside_one_sentence_is_cut() -> None:
    text = "I see Barack and a dog and a cat and a dog and a cat and a dog and a cat and a dog"
    _, final, reason = stop_on(text, 2)
    assert reason == "loop" and final.startswith("I see Barack") and final.count("a cat") == 1


def test_the_cap_is_configurable() -> None:
    text = "One is here. Two is here. Three is here. Four is here."
    assert stop_on(text, max_sentences=1)[1] == "One is here."
    assert stop_on(text, max_sentences=3)[1] == "One is here. Two is here. Three is here."
    with pytest.raises(ValueError, match="at least 1"):
        AnswerStop(0)


class Repeater:
    """A backend that says the same sentence forever (what SmolLM2-135M did)."""

    name = "repeater"

    def __init__(self, sentence: str) -> None:
        self.sentence = sentence
        self.served = 0
        self.closed_early = False

    def generate(self, prompt: Prompt, *, max_tokens: int = 256) -> Iterator[str]:  # noqa: ARG002
        try:
            for _ in range(max_tokens):
                for word in self.sentence.split(" "):
                    self.served += 1
                    yield word + " "
            self.closed_early = False
        except GeneratorExit:
            self.closed_early = True
            raise

    def close(self) -> None:
        pass


def _prompt() -> Prompt:
    return build_prompt(
        "Describe what you see.", [ConceptRef("Barack", "person", "Barack plays basketball.")]
    )


def test_generator_stops_the_model_and_streams_only_the_kept_text() -> None:
    backend = Repeater("Barack is here.")
    gen = Generator(backend, max_tokens=200, grounded=False)
    events: list[tuple[str, str]] = []
    result = gen.answer(_prompt(), lambda kind, text: events.append((kind, text)))
    assert result.text == "Barack is here."
    assert result.stopped in {"repeat", "loop"} and not result.fell_back
    assert backend.closed_early and backend.served < 20  # the model was stopped, not drained
    streamed = "".join(t for k, t in events if k == "token")
    assert streamed == result.text


def test_zero_sentences_keeps_the_raw_decoding_for_measurement() -> None:
    gen = Generator(Repeater("Barack is here."), max_tokens=5, max_sentences=0, grounded=False)
    result = gen.answer(_prompt())
    assert repeated_sentences(result.text)
