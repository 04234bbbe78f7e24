"""``make demo``'s own descriptions: no repeated sentence and no invented role.

The demo runs as ``rap-edge demo`` does, with the real face models, the real check photos and
SmolLM2-135M INT4 (the ``face_models`` and ``llm_model`` fixtures, gathered into one model
store as ``make models`` lays it out). Every description it prints is checked with the
description benchmark's own word list (bench/generation.py, independent of the generation
path): a relation or role may appear only when the info of someone recognised in that frame
states it (the demo's info says "Barack is the owner's neighbour", so "neighbour" is allowed
while Barack is in view, and "uncle" only once Joe is).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from bench.generation import RELATIONS
from rap_edge.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = [pytest.mark.network, pytest.mark.slow]

# The info the demo gives in its step 8 (rap_edge/cli/_demo.py).
_INFO = {
    "Barack": "Barack is the owner's neighbour; he plays basketball on Sundays.",
    "Joe": "Joe is the owner's uncle; he likes ice cream.",
}
_RELATION = re.compile(rf"\b({RELATIONS})\b", re.IGNORECASE)
_FRAME = re.compile(r"^  frame +(\d+) (.{24}) (.*?) +\d+ ms")
_DESCRIPTION = re.compile(r"^ +>> frame (\d+) \[([^,\]]+)[^\]]*\]: (.*)$")


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def _key(sentence: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", sentence.lower()))


def _store(face_models: Exported, llm_model: Path, root: Path) -> Path:
    """One model store holding the fixtures' face models, check photos and SmolLM2 INT4."""
    from rap_edge.generate import default_llm_dir

    store = root / "store"
    store.mkdir()
    face_store = face_models.store.path  # type: ignore[attr-defined]
    for entry in face_store.iterdir():
        (store / entry.name).symlink_to(entry)
    llm = default_llm_dir("ortgenai", store)
    if not llm.exists():
        llm.parent.mkdir(parents=True, exist_ok=True)
        llm.symlink_to(llm_model)
    return store


def test_demo_descriptions_repeat_nothing_and_invent_no_role(
    face_models: Exported,
    llm_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RAP_EDGE_MODELS", str(_store(face_models, llm_model, tmp_path)))
    for name in ("RAP_EDGE_BACKEND", "RAP_EDGE_THRESHOLDS", "RAP_EDGE_MEMORY"):
        monkeypatch.delenv(name, raising=False)
    capsys.readouterr()
    assert main(["demo", "--workdir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "8. a short sequence at 10 FPS with descriptions (ortgenai" in out, out

    in_view: dict[int, set[str]] = {}
    descriptions: list[tuple[int, str, str]] = []
    for line in out.splitlines():
        if m := _FRAME.match(line):
            said = {s.strip() for s in m.group(3).split(",")}
            in_view[int(m.group(1))] = {n for n in _INFO if n in said}
        elif m := _DESCRIPTION.match(line):
            descriptions.append((int(m.group(1)), m.group(2), m.group(3)))
    assert len(in_view) == 32
    assert descriptions, out
    assert any(backend == "ortgenai" for _, backend, _ in descriptions), descriptions

    for frame, _, text in descriptions:
        keys = [_key(s) for s in _sentences(text)]
        assert len(keys) == len(set(keys)), f"frame {frame} repeats a sentence: {text!r}"
        stated = " ".join(_INFO[n] for n in in_view[frame]).lower()
        invented = sorted(
            {w.lower() for w in _RELATION.findall(text)}
            - {w.lower() for w in _RELATION.findall(stated)}
        )
        assert invented == [], f"frame {frame} invents {invented}: {text!r}"
