"""RAP ``database.json`` import: any structure and any types give the concepts or an
InvalidInputError naming the problem, and a refused import adds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rap_edge.errors import RapEdgeError
from rap_edge.memory import Memory, import_rap
from rap_edge.memory._rap import read_rap
from tests.conftest import png_bytes
from tests.fuzz.conftest import FUZZ

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
# "a.png\x00": a NUL in a path, which the fuzzer found raising ValueError (fixed).
IMAGES = [
    "a.png",
    "sub/b.png",
    "../outside.png",
    "/etc/passwd",
    "",
    "missing.png",
    "a\tb.png",
    "a.png\x00",
]
TEXT = st.text(max_size=12) | st.sampled_from(["<bo>", "Bo", " ", "\u202e", "x" * 200])


@st.composite
def entries(draw: st.DrawFn) -> object:
    """A concept entry: mostly the right shape, with any field of any type."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    entry: dict[str, object] = {}
    for key, value in (
        ("name", TEXT),
        ("image", st.sampled_from(IMAGES) | st.lists(st.sampled_from(IMAGES), max_size=3)),
        ("info", TEXT),
        ("category", TEXT),
    ):
        if draw(st.integers(0, 5)):
            entry[key] = draw(value if draw(st.integers(0, 4)) else JSON)
    return entry


@st.composite
def databases(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    tokens = draw(st.lists(TEXT, max_size=4, unique=True))
    db: dict[str, object] = {"concept_dict": {t: draw(entries()) for t in tokens}}
    if draw(st.booleans()):
        db["path_to_concept"] = draw(
            st.dictionaries(
                st.sampled_from(IMAGES), st.sampled_from([*tokens, "<zz>"]) | JSON, max_size=3
            )
            | JSON
        )
    return db


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rap")
    (folder / "sub").mkdir()
    (folder / "a.png").write_bytes(png_bytes(1))
    (folder / "sub" / "b.png").write_bytes(png_bytes(2))
    (folder.parent / "outside.png").write_bytes(png_bytes(3))
    return folder


@FUZZ
@given(databases())
def test_any_database_parses_or_is_refused_with_an_input_error(root: Path, db: object) -> None:
    path = root / "database.json"
    path.write_text(json.dumps(db), encoding="utf-8")
    try:
        items = read_rap(path)
    except RapEdgeError:
        return
    for item in items:
        assert isinstance(item.name, str)
        paths = [Path(p) for p in item.images]  # type: ignore[arg-type]
        assert all(p.is_file() and p.is_relative_to(root) for p in paths)


@FUZZ
@given(databases())
def test_an_import_is_everything_or_nothing(
    root: Path, tmp_path_factory: pytest.TempPathFactory, db: object
) -> None:
    path = root / "database.json"
    path.write_text(json.dumps(db), encoding="utf-8")
    with Memory.init(tmp_path_factory.mktemp("mem") / "m") as memory:
        try:
            added = import_rap(memory, path)
        except RapEdgeError:
            assert memory.list_concepts() == []
            return
        assert len(memory.list_concepts()) == len(added)


def test_a_nul_in_an_image_path_is_an_input_error(root: Path) -> None:
    path = root / "database.json"
    path.write_text(
        json.dumps({"concept_dict": {"<a>": {"name": "a", "image": "a.png\x00"}}}),
        encoding="utf-8",
    )
    with pytest.raises(RapEdgeError, match="image path"):
        read_rap(path)
