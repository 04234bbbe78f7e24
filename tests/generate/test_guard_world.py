"""The guard knows the prompt: true world context passes, names stay protected."""

from __future__ import annotations

from rap_edge.generate import unfaithful_names


def test_the_guard_keeps_world_words_and_still_protects_names() -> None:
    text = "Barack was a president of the United States. He lived in Chicago in May."
    assert unfaithful_names(text, ["Barack"], ["Barack", "Joe"]) == []
    assert unfaithful_names(text, ["Barack"], ["Barack", "Joe"], world=False) == [
        "United",
        "States",
        "Chicago",
    ]
    # A memory name that was not retrieved is flagged, even where a place has that name.
    assert unfaithful_names("Chelsea is in London.", ["Barack"], ["Barack", "Chelsea"]) == [
        "Chelsea"
    ]
    assert unfaithful_names("Barack met Kevin in Paris.", ["Barack"], []) == ["Kevin", "Paris"]


def test_sentence_opening_function_words_are_not_names() -> None:
    # A first attempt the description benchmark's calibration split saw rejected.
    text = "Savage is on the left. About Savage: he fixes the garden."
    assert unfaithful_names(text, ["Savage"], ["Savage", "Joe"]) == []
    # An invented name after an opener is still caught, and so is an unknown opener.
    assert unfaithful_names("About Zorg: he fixes it.", ["Savage"], []) == ["Zorg"]
    assert unfaithful_names("Zorg fixes it.", ["Savage"], []) == ["Zorg"]
    assert unfaithful_names("With Joe here.", ["Savage"], ["Savage", "Joe"]) == ["Joe"]
