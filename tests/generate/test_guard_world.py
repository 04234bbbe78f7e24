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
