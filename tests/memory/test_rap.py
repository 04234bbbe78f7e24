"""RAP database.json import and export."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest

from rap_edge.errors import ConflictError, InvalidInputError
from rap_edge.memory import Memory, export_rap, import_rap
from tests.conftest import png_bytes

if TYPE_CHECKING:
    from pathlib import Path


def _rap_folder(
    root: Path,
    concepts: dict[str, dict[str, object]] | None = None,
    path_to_concept: dict[str, str] | None = None,
) -> Path:
    """A RAP-style layout: root/example_database/{database.json, bo.png, ...}."""
    folder = root / "example_database"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["bo", "mam", "bo_side"]):
        (folder / f"{name}.png").write_bytes(png_bytes(100 + i))
    if concepts is None:
        concepts = {
            "<bo>": {
                "name": "bo",
                "image": "example_database/bo.png",
                "info": "<bo> is a well-groomed Shiba Inu.",
                "category": "dog",
            },
            "<mam>": {
                "name": "mam",
                "image": ["example_database/mam.png"],
                "info": "<mam> is a grey cat.",
                "category": "cat",
            },
        }
    if path_to_concept is None:
        path_to_concept = {
            "example_database/bo.png": "<bo>",
            "example_database/bo_side.png": "<bo>",
            "example_database/mam.png": "<mam>",
        }
    db = folder / "database.json"
    db.write_text(json.dumps({"concept_dict": concepts, "path_to_concept": path_to_concept}))
    return db


def test_import_rap_example_layout(memory: Memory, tmp_path: Path) -> None:
    db = _rap_folder(tmp_path / "rap")
    added = import_rap(memory, db)
    assert [c.name for c in added] == ["bo", "mam"]
    bo = memory.get("bo")
    assert (bo.category, bo.info, bo.aliases) == (
        "dog",
        "<bo> is a well-groomed Shiba Inu.",
        ("<bo>",),
    )
    # The image field plus every extra path_to_concept entry of the token.
    assert [img.source_name for img in bo.images] == ["bo.png", "bo_side.png"]
    assert len(memory.pending()) == 3


def test_import_paths_relative_to_the_json_folder_or_root(memory: Memory, tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(1))
    db = folder / "database.json"
    db.write_text(
        json.dumps(
            {
                "concept_dict": {
                    "<a>": {"name": "a", "image": "a.png", "info": "", "category": "mug"}
                }
            }
        )
    )
    assert [c.name for c in import_rap(memory, db)] == ["a"]
    elsewhere = tmp_path / "images"
    elsewhere.mkdir()
    (elsewhere / "b.png").write_bytes(png_bytes(2))
    db.write_text(json.dumps({"concept_dict": {"<b>": {"name": "b", "image": "b.png"}}}))
    with pytest.raises(InvalidInputError, match="'b.png' not found under"):
        import_rap(memory, db)
    assert [c.name for c in import_rap(memory, db, root=elsewhere)] == ["a", "b"][1:]
    assert memory.get("b").category == "object"


@pytest.mark.parametrize(
    ("image", "match"),
    [
        ("../secret.png", "escapes the root"),
        ("example_database/../../secret.png", "escapes the root"),
        ("/etc/passwd", "is absolute"),
        ("example_database/missing.png", "not found"),
        ("", "non-empty string"),
        (7, "must be a path or a non-empty list"),
    ],
)
def test_import_rejects_bad_paths_and_imports_nothing(
    memory: Memory, tmp_path: Path, image: object, match: str
) -> None:
    (tmp_path / "secret.png").write_bytes(png_bytes(9))
    concepts = {
        "<ok>": {"name": "ok", "image": "example_database/bo.png", "info": "", "category": "x"},
        "<bad>": {"name": "bad", "image": image, "info": "", "category": "x"},
    }
    db = _rap_folder(tmp_path / "rap", concepts, {})
    with pytest.raises(InvalidInputError, match=match):
        import_rap(memory, db, root=tmp_path / "rap")
    assert len(memory) == 0
    assert list((memory.path / "images").rglob("*.png")) == []


def test_import_rejects_symlink_escaping_root(memory: Memory, tmp_path: Path) -> None:
    (tmp_path / "outside.png").write_bytes(png_bytes(9))
    db = _rap_folder(
        tmp_path / "rap", {"<a>": {"name": "a", "image": "example_database/l.png"}}, {}
    )
    os.symlink(tmp_path / "outside.png", db.parent / "l.png")
    with pytest.raises(InvalidInputError, match="escapes the root"):
        import_rap(memory, db)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[]", "not a RAP database"),
        ('{"concept_dict": []}', "not a RAP database"),
        ('{"concept_dict": {"<a>": "x"}}', "must be an object"),
        ('{"concept_dict": {"<a>": {"image": "a.png"}}}', "missing 'name'"),
        ('{"concept_dict": {"<a>": {"name": 3, "image": "a.png"}}}', "'name' must be a string"),
        ('{"concept_dict": {"<a>": {"name": "a", "image": []}}}', "non-empty list"),
        ('{"concept_dict": {}, "path_to_concept": {"a.png": "<zz>"}}', "unknown concept"),
    ],
)
def test_malformed_database_json(memory: Memory, tmp_path: Path, content: str, match: str) -> None:
    db = tmp_path / "database.json"
    db.write_text(content)
    with pytest.raises(InvalidInputError, match=match):
        import_rap(memory, db)


def test_wrong_encoding_is_named(memory: Memory, tmp_path: Path) -> None:
    db = tmp_path / "database.json"
    db.write_bytes('{"concept_dict": {"<é>": {}}}'.encode("latin-1"))
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        import_rap(memory, db)


def test_conflicts_error_or_skip(memory: Memory, tmp_path: Path) -> None:
    memory.add("bo", info="mine")
    db = _rap_folder(tmp_path / "rap")
    with pytest.raises(ConflictError, match="already in the memory: bo"):
        import_rap(memory, db)
    assert [c.name for c in memory.list_concepts()] == ["bo"]
    assert [c.name for c in import_rap(memory, db, on_conflict="skip")] == ["mam"]
    assert memory.get("bo").info == "mine"


def _rap_lookup(run_dir: Path, database_arg: str) -> dict[str, tuple[str, str]]:
    """What RAP's own code does: walk the folder, look each file up, open it from the cwd."""
    data = json.loads((run_dir / database_arg / "database.json").read_text())
    found = {}
    for root, _dirs, files in os.walk(run_dir / database_arg):
        for file in files:
            if file.endswith((".png", ".jpg", ".jpeg", ".gif")):
                rel = os.path.relpath(os.path.join(root, file), run_dir)
                token = data["path_to_concept"][rel.lstrip("./")]
                entry = data["concept_dict"][token]
                assert (run_dir / entry["image"]).is_file()
                found[rel] = (entry["name"], entry["info"])
    return found


def test_export_is_readable_the_way_rap_reads_it(memory: Memory, tmp_path: Path) -> None:
    import_rap(memory, _rap_folder(tmp_path / "rap"))
    memory.add("Ana Lee", images=[png_bytes(7)], category="person", info="my sister")
    memory.add("no picture")
    result = export_rap(memory, tmp_path / "out" / "my_db")
    assert result.skipped == ("no picture",)
    assert (result.concepts, result.images) == (3, 4)
    seen = _rap_lookup(tmp_path / "out", "my_db")
    assert sorted(seen.values()) == [
        ("Ana Lee", "my sister"),
        ("bo", "<bo> is a well-groomed Shiba Inu."),
        ("bo", "<bo> is a well-groomed Shiba Inu."),
        ("mam", "<mam> is a grey cat."),
    ]
    data = json.loads(result.database.read_text())
    assert set(data) == {"concept_dict", "path_to_concept"}
    assert data["concept_dict"]["<bo>"]["image"] == "my_db/bo.png"
    assert "<Ana_Lee>" in data["concept_dict"]


def test_export_import_roundtrip(memory: Memory, tmp_path: Path) -> None:
    import_rap(memory, _rap_folder(tmp_path / "rap"))
    result = export_rap(memory, tmp_path / "exported")
    with Memory.init(tmp_path / "m2") as other:
        import_rap(other, result.database)
        for a, b in zip(memory.list_concepts(), other.list_concepts(), strict=True):
            assert (a.name, a.category, a.info, a.aliases) == (
                b.name,
                b.category,
                b.info,
                b.aliases,
            )
            assert [i.sha256 for i in a.images] == [i.sha256 for i in b.images]


def test_export_refuses_a_non_empty_folder(memory: Memory, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not an empty folder"):
        export_rap(memory, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_an_error_in_a_10k_entry_import_names_the_concept(memory: Memory, tmp_path: Path) -> None:
    """Issue 14, item 11: which of 10,000 concepts is at fault, and nothing imported."""
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "p.png").write_bytes(png_bytes(1))
    concepts: dict[str, dict[str, object]] = {
        f"<p{i}>": {"name": f"person {i}", "image": "p.png", "info": "", "category": "person"}
        for i in range(10_000)
    }
    concepts["<p7321>"]["info"] = "x" * 5000
    db = folder / "database.json"
    db.write_text(json.dumps({"concept_dict": concepts}))
    with pytest.raises(InvalidInputError) as caught:
        import_rap(memory, db)
    message = str(caught.value)
    assert "'person 7321'" in message and "<p7321>" in message, message
    assert "7322 of 10000" in message and "info has 5000 characters" in message, message
    assert len(memory) == 0


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_import_refuses_what_is_not_a_regular_file(
    memory: Memory, tmp_path: Path, kind: str
) -> None:
    """/dev/zero once filled 9.6 GB and a FIFO hung the import (issue 14, item 7)."""
    if kind == "fifo":
        path = tmp_path / "database.json"
        os.mkfifo(path)
    else:
        path = tmp_path / "zero.json"
        path.symlink_to("/dev/zero")
    with pytest.raises(InvalidInputError, match="not a regular file"):
        import_rap(memory, path)
    assert memory.list_concepts() == []
