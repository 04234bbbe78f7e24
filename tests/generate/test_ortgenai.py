"""The ortgenai backend and the LLM export on the real SmolLM2-135M (pinned GGUF -> INT4).

These run the real model: they check the export's parity record, streaming, token bounds and
that the guarded answers never name a memory concept the retriever did not return. They do
not judge the prose (a 135M model's answers are weak; see the README's generation table).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path  # noqa: TC003 - fixtures' annotations

import pytest

from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.generate import ConceptRef, Generator, build_prompt, open_backend

pytestmark = [pytest.mark.network, pytest.mark.slow]

MEMORY = ["Ana", "Bo", "Carl", "Dina", "Eli", "Fig"]
SCENES = [
    (
        "Describe what you see.",
        [ConceptRef("Ana", "person", "Ana is the owner's sister.", 0.95, "left")],
    ),
    ("Is Carl here?", [ConceptRef("Bo", "dog", "Bo is a golden retriever puppy.", 0.9, "right")]),
    (
        "What is Dina doing?",
        [
            ConceptRef("Dina", "person", "Dina plays violin.", 0.93),
            ConceptRef("Fig", "cat", "Fig sleeps on the sofa.", 0.91, "left"),
        ],
    ),
]


@pytest.fixture(scope="module")
def backend(llm_model: Path):
    b, note = open_backend("ortgenai", llm_model)
    assert note.startswith("ortgenai:") and b.model_type == "llama"
    return b


def test_export_records_parity_and_hashes(llm_model: Path, tmp_path: Path) -> None:
    from export import llm

    m = json.loads((llm_model / llm.MANIFEST).read_text())
    assert m["precision"] == "int4" and m["target"] == "cpu"
    assert m["parity"]["ok"] and m["parity"]["min_logit_cosine_to_fp32"] >= 0.97
    assert set(m["files"]) == {"model.onnx", "model.onnx.data"}
    assert m["source"]["gguf_sha256"] == (
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    )
    assert llm.current(llm_model)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "model.onnx").write_bytes(b"x")
    (fake / llm.MANIFEST).write_text(json.dumps({"files": {"model.onnx": "0" * 64}}))
    assert not llm.current(fake) and not llm.current(tmp_path / "missing")


def test_streams_pieces_before_the_end_and_bounds_tokens(backend) -> None:
    prompt = build_prompt("Describe what you see.", SCENES[0][1])
    stream = backend.generate(prompt, max_tokens=12)
    first = next(stream)  # available while the rest is still being generated
    rest = list(stream)
    assert isinstance(first, str) and len(rest) + 1 <= 12
    assert (first + "".join(rest)).strip()
    assert len(list(backend.generate(prompt, max_tokens=1))) <= 1


def test_guarded_answers_never_name_an_unretrieved_concept(backend) -> None:
    gen = Generator(backend, known_names=MEMORY, max_tokens=40)
    for question, refs in SCENES:
        asked = [n for n in MEMORY if re.search(rf"\b{n}\b", question)]
        prompt = build_prompt(question, refs, asked=asked)
        result = gen.answer(prompt)
        assert result.text
        for name in set(MEMORY) - set(prompt.allowed_names):
            assert not re.search(rf"(?<!\w){name}(?!\w)", result.text, re.IGNORECASE), (
                name,
                result.text,
            )
        assert result.backend in {"ortgenai", "template"}
        assert result.fell_back == (result.backend == "template")
    assert gen.stats["requests"] == len(SCENES)


def test_backend_errors_and_auto(
    tmp_path: Path, llm_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelStoreError, match="no genai_config.json"):
        open_backend("ortgenai", tmp_path / "nothing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "genai_config.json").write_text("{not json")
    with pytest.raises(ModelStoreError, match="malformed"):
        open_backend("ortgenai", bad)
    with pytest.raises(InvalidInputError, match="unknown generation backend"):
        open_backend("gpt")
    b, note = open_backend("auto", store=tmp_path / "empty-store")
    assert b.name == "template" and "no LLM" in note and "make models" in note
    b, _ = open_backend("auto", llm_model)
    assert b.name == "ortgenai"
    monkeypatch.setenv("RAP_EDGE_BACKEND", "template")
    assert open_backend()[0].name == "template"


def test_one_generation_at_a_time_per_model(backend) -> None:
    prompt = build_prompt("Say hello.", [])
    out: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: out.append("".join(backend.generate(prompt, max_tokens=6)))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(out) == 2 and out[0] == out[1]  # greedy: same text, no interleaving damage


def test_process_backend_matches_in_process_and_survives_a_dead_child(
    backend, llm_model: Path, tmp_path: Path
) -> None:
    prompt = build_prompt("Say hello.", [])
    want = "".join(backend.generate(prompt, max_tokens=8))
    proc, note = open_backend("ortgenai", llm_model, isolate=True, threads=1)
    try:
        assert "in child process" in note and proc.name == "ortgenai"
        assert "".join(proc.generate(prompt, max_tokens=8)) == want
        stream = proc.generate(prompt, max_tokens=8)
        next(stream)
        stream.close()  # abandoned half-way: the rest is drained, the next answer is whole
        assert "".join(proc.generate(prompt, max_tokens=8)) == want
        proc._proc.kill()
        proc._proc.join(5)
        gen = Generator(proc)
        r = gen.answer(build_prompt("Who is here?", SCENES[0][1]))
        assert r.fell_back and r.backend == "template" and "process" in (r.error or "")
    finally:
        proc.close()
    with pytest.raises(ModelStoreError, match="no genai_config.json"):
        open_backend("ortgenai", tmp_path / "nothing", isolate=True)
