"""The memory API: concepts, images, vectors, search, indexes, permissions, schema."""

from __future__ import annotations

import os
import stat
import unicodedata
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.errors import ConceptNotFoundError, ConfigError, ConflictError, InvalidInputError
from rap_edge.memory import Memory, NewConcept
from rap_edge.memory import _schema as schema
from tests.conftest import png_bytes, unit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

ENC = "test/enc-16"


def test_add_get_list_roundtrip(memory: Memory, make_image: Callable[..., Path]) -> None:
    rng = np.random.default_rng(0)
    a = memory.add(
        "Alice",
        images=[make_image(1), make_image(2)],
        category="Person",
        info="likes tea",
        aliases=["Ali", "alice", "<alice>"],
        vectors=unit(rng, 16, 2),
        encoder=ENC,
    )
    assert a.id.startswith("c_")
    assert a.category == "person"
    assert a.aliases == ("Ali", "<alice>")  # the duplicate of the name is dropped
    assert [img.encoders for img in a.images] == [(ENC,), (ENC,)]
    assert all(img.path.is_file() and img.path.parent.parent.name == "images" for img in a.images)
    assert memory.get("alice") == a == memory.get(a.id)
    memory.add("bob", images=[png_bytes(3)])
    assert [c.name for c in memory.list_concepts()] == ["Alice", "bob"]
    assert [c.name for c in memory.list_concepts(category="person")] == ["Alice"]
    assert len(memory) == 2
    assert memory.active_encoder == ENC
    assert memory.encoders() == {ENC: 16}


def test_images_are_content_addressed_and_shared(memory: Memory) -> None:
    a = memory.add("a", images=[png_bytes(1)])
    b = memory.add("b", images=[png_bytes(1)])
    assert a.images[0].path == b.images[0].path
    memory.remove("a")
    assert b.images[0].path.exists(), "a file still used by another concept must stay"
    memory.remove("b")
    assert not b.images[0].path.exists()


def test_update_rename_and_aliases(memory: Memory) -> None:
    c = memory.add("rex", category="dog")
    memory.add("max", category="dog")
    with pytest.raises(ConflictError, match="(?i)max.*already exists"):
        memory.update("rex", name="MAX")
    u = memory.update("REX", name="Rex", info="a terrier", aliases=["<rex>"])
    assert (u.id, u.name, u.info, u.aliases, u.category) == (
        c.id,
        "Rex",
        "a terrier",
        ("<rex>",),
        "dog",
    )
    assert u.updated_at >= c.updated_at
    with pytest.raises(ConceptNotFoundError, match="nobody"):
        memory.get("nobody")


def test_add_and_remove_images_update_search(memory: Memory) -> None:
    rng = np.random.default_rng(1)
    v = unit(rng, 16, 3)
    memory.add("a", images=[png_bytes(1)], vectors=v[:1], encoder=ENC)
    img = memory.add_image("a", png_bytes(2), vector=v[1], encoder=ENC)
    assert memory.search(v[1], k=1)[0][0].image_id == img.id
    with pytest.raises(ConflictError, match="already has"):
        memory.add_image("a", png_bytes(2))
    memory.remove_image(img.id)
    hits = memory.search(v[1], k=1)[0]
    assert hits[0].image_id != img.id
    with pytest.raises(ConceptNotFoundError):
        memory.remove_image(img.id)


def test_search_k_threshold_and_aggregation(memory: Memory) -> None:
    rng = np.random.default_rng(2)
    vecs = unit(rng, 16, 5)
    memory.add("a", images=[png_bytes(1), png_bytes(2)], vectors=vecs[:2], encoder=ENC)
    memory.add("b", images=[png_bytes(3)], vectors=vecs[2:3], encoder=ENC)
    memory.add("c", images=[png_bytes(4)], vectors=vecs[3:4], encoder=ENC)
    hits = memory.search(vecs[1], k=3)[0]
    # One hit per concept, the best image of "a" wins, sorted by score.
    assert [h.name for h in hits][0] == "a"
    assert len({h.concept_id for h in hits}) == len(hits) == 3
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    only = memory.search(vecs[1], k=3, threshold=0.99)[0]
    assert [h.name for h in only] == ["a"]
    assert memory.search(-vecs[1], k=3, threshold=0.99) == [[]]
    batch = memory.search(vecs[:4], k=1)
    assert [hits[0].name for hits in batch] == ["a", "a", "b", "c"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must"),
        ({"k": 10**6}, "k must"),
        ({"k": 1.5}, "k must"),
        ({"threshold": 2.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
    ],
)
def test_search_rejects_absurd_parameters(
    memory: Memory, kwargs: dict[str, float], match: str
) -> None:
    memory.add("a", images=[png_bytes(1)], vectors=np.ones((1, 4)), encoder="e")
    with pytest.raises(InvalidInputError, match=match):
        memory.search(np.ones(4), **kwargs)  # type: ignore[arg-type]


def test_search_without_vectors_says_so(memory: Memory) -> None:
    memory.add("a", images=[png_bytes(1)])
    with pytest.raises(ConfigError, match="no vectors"):
        memory.search(np.ones(4))


def test_encoders_never_mix(memory: Memory) -> None:
    rng = np.random.default_rng(3)
    memory.add("a", images=[png_bytes(1)], vectors=unit(rng, 16), encoder="enc-a")
    c = memory.add("b", images=[png_bytes(2)], vectors=unit(rng, 8), encoder="enc-b")
    with pytest.raises(InvalidInputError, match="dimension 8 does not match.* 16"):
        memory.search(unit(rng, 8), encoder="enc-a")
    assert [h.name for h in memory.search(unit(rng, 8), encoder="enc-b")[0]] == ["b"]
    # b's image is pending for the active encoder until something embeds it.
    assert [p.id for p in memory.pending("enc-a")] == [c.images[0].id]


class MeanColourEmbedder:
    """Test-only embedder (mean BGR colour): proves the pending-image plumbing, nothing else."""

    encoder_id = "test/mean-colour"
    dim = 3

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.calls += 1
        return np.stack([img.reshape(-1, 3).mean(axis=0) + 1.0 for img in images]).astype(
            np.float32
        )


def test_pending_images_are_embedded_when_an_encoder_exists(memory: Memory) -> None:
    memory.add("a", images=[png_bytes(1), png_bytes(2)])
    memory.add("b", images=[png_bytes(3)])
    assert len(memory.pending()) == 3
    embedder = MeanColourEmbedder()
    assert memory.embed_pending(embedder, batch_size=2) == 3
    assert embedder.calls == 2
    assert memory.pending() == []
    assert memory.active_encoder == embedder.encoder_id
    query = embedder.embed(
        [np.asarray(__import__("cv2").imread(str(memory.get("b").images[0].path)))]
    )
    assert memory.search(query, k=1)[0][0].name == "b"
    # Switching encoders: the images become pending for the new one, from the stored files.
    memory.set_active_encoder("other/enc", dim=7)
    assert len(memory.pending()) == 3


def test_edits_visible_across_instances_without_reopening(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    v = unit(rng, 16, 2)
    with Memory.init(tmp_path / "m") as writer, Memory(tmp_path / "m") as reader:
        writer.add("a", images=[png_bytes(1)], vectors=v[:1], encoder=ENC)
        assert reader.search(v[0], k=1)[0][0].name == "a"
        writer.add("b", images=[png_bytes(2)], vectors=v[1:], encoder=ENC)
        assert reader.search(v[1], k=1)[0][0].name == "b"
        writer.remove("b")
        assert all(h.name != "b" for h in reader.search(v[1], k=5)[0])
        writer.update("a", name="A2")
        assert reader.search(v[0], k=1)[0][0].name == "A2"


def test_index_is_saved_and_reused_or_rebuilt(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    v = unit(rng, 16, 3)
    with Memory.init(tmp_path / "m") as mem:
        mem.add("a", images=[png_bytes(1), png_bytes(2), png_bytes(3)], vectors=v, encoder=ENC)
        index_file = mem._index_path(ENC)
    assert index_file.is_file()
    mtime = index_file.stat().st_mtime_ns
    with Memory(tmp_path / "m") as mem:
        assert mem.search(v[2], k=1)[0][0].name == "a"
    assert index_file.stat().st_mtime_ns == mtime, "a current index is loaded, not rebuilt"
    # Corrupt it: searching rebuilds it and results are unchanged.
    index_file.write_bytes(index_file.read_bytes()[:-40])
    with Memory(tmp_path / "m") as mem:
        assert "unreadable" in " ".join(mem.verify().warnings)
        assert mem.search(v[2], k=1)[0][0].name == "a"
    assert index_file.stat().st_mtime_ns != mtime
    # Delete it: same.
    index_file.unlink()
    with Memory(tmp_path / "m") as mem:
        assert mem.search(v[1], k=1)[0][0].name == "a"
        assert index_file.is_file()
        assert mem.verify().warnings == ()
    # Stale: an edit made with the index file swapped for an older one.
    old = index_file.read_bytes()
    with Memory(tmp_path / "m") as mem:
        mem.add("b", images=[png_bytes(4)], vectors=-v[:1], encoder=ENC)
    index_file.write_bytes(old)
    with Memory(tmp_path / "m") as mem:
        assert "stale" in " ".join(mem.verify().warnings)
        assert mem.search(-v[0], k=1)[0][0].name == "b"


def test_i8_index_option(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    v = unit(rng, 32, 4)
    with Memory.init(tmp_path / "m", index_dtype="i8") as mem:
        mem.add_many(
            [
                NewConcept(f"c{i}", images=[png_bytes(i)], vectors=v[i : i + 1], encoder=ENC)
                for i in range(4)
            ]
        )
        assert mem.index_dtype == "i8"
        assert [mem.search(v[i], k=1)[0][0].name for i in range(4)] == ["c0", "c1", "c2", "c3"]
    with Memory(tmp_path / "m") as mem:
        assert mem.index_dtype == "i8"


def test_files_are_owner_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    with Memory.init(tmp_path / "m") as mem:
        mem.add("a", images=[png_bytes(1)], vectors=unit(rng, 16), encoder=ENC)
        root = mem.path
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_add_many_is_all_or_nothing(memory: Memory, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match=r"bad\.png: not an image"):
        memory.add_many([NewConcept("ok", images=[png_bytes(1)]), NewConcept("bad", images=[bad])])
    assert len(memory) == 0
    assert list((memory.path / "images").rglob("*.png")) == []
    with pytest.raises(ConflictError, match="twice"):
        memory.add_many([NewConcept("x"), NewConcept("X")])


def test_failed_transaction_leaves_no_file(memory: Memory) -> None:
    memory.add("a")
    with pytest.raises(ConflictError):
        memory.add("A", images=[png_bytes(9)])
    assert list((memory.path / "images").rglob("*.png")) == []


def test_forward_migration_runs_and_records_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Memory.init(tmp_path / "m") as mem:
        mem.add("a", images=[png_bytes(1)])

    def add_column(conn: object) -> None:
        conn.execute("ALTER TABLE concepts ADD COLUMN extra TEXT")  # type: ignore[attr-defined]

    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, schema.SCHEMA_VERSION - 1, add_column)
    with Memory(tmp_path / "m") as mem:
        conn = mem._conn()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        assert "extra" in [r[1] for r in conn.execute("PRAGMA table_info(concepts)")]
        assert mem.get("a").name == "a"


def test_init_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    with Memory.init(tmp_path / "m") as mem:
        mem.add("a")
    with Memory.init(tmp_path / "m") as mem:
        assert [c.name for c in mem.list_concepts()] == ["a"]


def test_default_memory_dir_honours_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rap_edge.memory import default_memory_dir

    monkeypatch.setenv("RAP_EDGE_MEMORY", str(tmp_path / "x"))
    assert default_memory_dir() == tmp_path / "x"
    monkeypatch.delenv("RAP_EDGE_MEMORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert str(default_memory_dir()).startswith(str(tmp_path / "data"))
    assert os.path.basename(default_memory_dir()) == "memory"


@pytest.mark.parametrize("index_dtype", ["i8", "f16"])
def test_scores_are_exact_and_rerank_quantized_candidates(
    tmp_path: Path, index_dtype: str
) -> None:
    # Near-duplicates (cosine ~0.999 to each other) that int8 quantization cannot order.
    rng = np.random.default_rng(8)
    base = unit(rng, 256)[0]
    vecs = base + 0.02 * unit(rng, 256, 60)
    with Memory.init(tmp_path / "m", index_dtype=index_dtype) as mem:  # type: ignore[arg-type]
        mem.add_many(
            [
                NewConcept(f"c{i}", images=[png_bytes(i)], vectors=vecs[i : i + 1], encoder=ENC)
                for i in range(60)
            ]
        )
        for i in range(60):
            query = vecs[i] + 0.002 * unit(rng, 256)[0]
            hit = mem.search(query, k=1)[0][0]
            truth = vecs @ query / np.linalg.norm(vecs, axis=1) / np.linalg.norm(query)
            assert hit.name == f"c{int(np.argmax(truth))}"
            assert hit.score == pytest.approx(float(truth.max()), abs=1e-5)


# -- issue 14 items 5 and 6: names, aliases and ids are unique handles ---------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Élise", "élise"),
        ("Straße", "STRASSE"),
        ("ÆSIR", "æsir"),
        ("Σίσυφος", "ΣΊΣΥΦΟΣ"),
        ("Élise", "E\u0301LISE"),  # decomposed: NFC first, then case folding
        ("ǅemal", "Ǆemal"),
    ],
)
def test_names_differing_only_in_unicode_case_are_one_name(
    memory: Memory, first: str, second: str
) -> None:
    a = memory.add(first)
    with pytest.raises(ConflictError, match=f"already exists \\({a.id}\\)"):
        memory.add(second)
    b = memory.add("other")
    with pytest.raises(ConflictError, match=f"already exists \\({a.id}\\)"):
        memory.update(b.id, name=second)
    with pytest.raises(ConflictError, match="twice"):
        memory.add_many([NewConcept("x1" + first), NewConcept("x1" + second)])
    # The other spelling finds the concept, and a concept may be renamed to a case variant.
    assert memory.get(second).id == a.id
    stored = unicodedata.normalize("NFC", second)
    assert memory.update(a.id, name=second).name == stored
    assert memory.get(first).id == a.id
    assert [c.name for c in memory.list_concepts()] == sorted([stored, "other"], key=str.lower)


def test_a_name_may_not_equal_another_concepts_alias_or_id(memory: Memory) -> None:
    ana = memory.add("Ana", aliases=["Bo"])
    with pytest.raises(
        ConflictError, match=f"name 'bo' is already an alias of 'Ana' \\({ana.id}\\)"
    ):
        memory.add("bo")
    with pytest.raises(ConflictError, match=f"name '{ana.id.upper()}' is already the id of 'Ana'"):
        memory.add(ana.id.upper())
    cy = memory.add("Cy")
    with pytest.raises(
        ConflictError, match=f"alias 'ana' is already the name of 'Ana' \\({ana.id}\\)"
    ):
        memory.add("Dee", aliases=["ana"])
    with pytest.raises(ConflictError, match="alias 'BO' is already an alias of 'Ana'"):
        memory.update(cy.id, aliases=["BO"])
    with pytest.raises(ConflictError, match="name 'Bo' is already an alias of 'Ana'"):
        memory.update(cy.id, name="Bo")
    with pytest.raises(ConflictError, match=f"is already the id of 'Cy' \\({cy.id}\\)"):
        memory.update(ana.id, aliases=[cy.id])
    with pytest.raises(ConflictError, match="alias 'eve' is already the name of 'Eve'"):
        memory.add_many([NewConcept("Eve"), NewConcept("Fay", aliases=["eve"])])
    # Dropping the alias frees it; renaming frees the old name.
    memory.update(ana.id, aliases=[])
    assert memory.add("Bo").name == "Bo"
    memory.update(cy.id, name="Cyrus")
    assert memory.add("cy", aliases=["Cee"]).aliases == ("Cee",)
    assert len(memory) == 4
    # An alias is no handle for get/remove (names and ids are), but it stays unique.
    with pytest.raises(ConceptNotFoundError):
        memory.get("Cee")
    memory.remove("cy")
    assert memory.add("Cee").name == "Cee"


def _legacy_memory(path: Path, version: int) -> None:
    """A memory with the schema of ``version``, holding handles that clash as rap-edge before
    schema 2 let them: names differing only in non-ASCII case, a name equal to an alias."""
    import json
    import sqlite3

    from rap_edge.memory import _schema

    Memory.init(path).close()
    (path / "memory.db").unlink()
    conn = sqlite3.connect(path / "memory.db", isolation_level=None)
    conn.execute("BEGIN")
    _schema.create(conn, created_at=1.0, version=version)
    conn.execute("INSERT INTO meta(key, value) VALUES ('index_dtype', 'f16')")
    rows = [
        ("c_000000000001", "Élise", ["Bo"], 1.0),
        ("c_000000000002", "élise", [], 2.0),
        ("c_000000000003", "bo", ["Straße"], 3.0),
        ("c_000000000004", "STRASSE", [], 4.0),
    ]
    for cid, name, aliases, t in rows:
        conn.execute(
            "INSERT INTO concepts(id, name, aliases, category, created_at, updated_at) "
            "VALUES (?, ?, ?, 'person', ?, ?)",
            (cid, name, json.dumps(aliases), t, t),
        )
    conn.execute("COMMIT")
    conn.close()


def test_migration_to_unique_handles_keeps_old_clashes_reachable(tmp_path: Path) -> None:
    from rap_edge.memory import _schema

    _legacy_memory(tmp_path / "m", version=1)
    with Memory(tmp_path / "m") as mem:
        version = mem._conn().execute("PRAGMA user_version").fetchone()[0]
        assert version == _schema.SCHEMA_VERSION
        # The older concept keeps a clashing handle; the newer is reached by its id.
        assert mem.get("ÉLISE").id == "c_000000000001"
        assert mem.get("c_000000000002").name == "élise"
        assert mem.get("bo").id == "c_000000000003"  # "Bo" was only an alias of Élise
        report = mem.verify()
        assert report.ok, report.problems
        clashes = sorted(w for w in report.warnings if "had to differ" in w)
        assert len(clashes) == 3, clashes
        assert any("name 'élise' of 'élise' (c_000000000002)" in w for w in clashes)
        # Names are registered before aliases: the name "bo" keeps it, the alias "Bo" not.
        bo = "alias 'Bo' of 'Élise' (c_000000000001) is also the name of 'bo'"
        assert any(bo in w for w in clashes)
        # Grandfathered clashes do not block other edits of those concepts...
        mem.update("c_000000000002", info="still editable")
        # ...but no new clash can be made, and renaming one out of the clash settles it.
        with pytest.raises(ConflictError, match="already exists"):
            mem.add("ÉLISE")
        mem.update("c_000000000002", name="Élise B")
        assert sum("had to differ" in w for w in mem.verify().warnings) == 2


# -- issue 14 item 10: a checksum per vector ------------------------------------------------------


def test_verify_finds_a_vector_row_with_flipped_sign_bits(memory: Memory) -> None:
    import sqlite3

    rng = np.random.default_rng(10)
    memory.add("keep", images=[png_bytes(1)], vectors=unit(rng, 16), encoder=ENC)
    memory.add("damaged", images=[png_bytes(2)], vectors=unit(rng, 16), encoder=ENC)
    assert memory.verify().ok
    conn = sqlite3.connect(memory.path / "memory.db")
    key, blob = conn.execute(
        "SELECT v.id, v.vector FROM vectors v JOIN images i ON i.id = v.image_id "
        "JOIN concepts c ON c.id = i.concept_id WHERE c.name = 'damaged'"
    ).fetchone()
    flipped = (-np.frombuffer(blob, dtype="<f4")).astype("<f4").tobytes()  # every sign bit
    conn.execute("UPDATE vectors SET vector = ? WHERE id = ?", (flipped, key))
    conn.commit()
    conn.close()
    report = memory.verify()
    assert not report.ok
    assert report.problems == (
        f"vector {key} of encoder {ENC!r} (image of 'damaged') does not match its checksum",
    )
    # Replacing the vector (re-embedding) repairs it.
    [image] = memory.get("damaged").images
    memory.set_vectors([image.id], unit(rng, 16), encoder=ENC)
    assert memory.verify().ok


def test_migration_adds_checksums_and_keeps_vectors(tmp_path: Path) -> None:
    import sqlite3

    from rap_edge.memory import _schema

    _legacy_memory(tmp_path / "m", version=2)
    rng = np.random.default_rng(11)
    vec = unit(rng, 16)
    conn = sqlite3.connect(tmp_path / "m" / "memory.db", isolation_level=None)
    conn.execute(
        "INSERT INTO images(concept_id, sha256, ext, width, height, source_name, added_at) "
        "VALUES ('c_000000000001', 'ab', 'png', 16, 16, 'x.png', 1.0)"
    )
    conn.execute("INSERT INTO encoders(id, dim, created_at) VALUES (?, 16, 1.0)", (ENC,))
    conn.execute("INSERT INTO meta(key, value) VALUES ('active_encoder', ?)", (ENC,))
    conn.execute(
        "INSERT INTO vectors(image_id, encoder_id, vector) VALUES (1, ?, ?)",
        (ENC, vec.astype("<f4").tobytes()),
    )
    gen = conn.execute("SELECT generation FROM encoders").fetchone()[0]
    conn.close()
    with Memory(tmp_path / "m") as mem:
        conn = mem._conn()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == _schema.SCHEMA_VERSION
        # The checksums were filled in without bumping the encoder's generation.
        assert conn.execute("SELECT generation FROM encoders").fetchone()[0] == gen
        assert not [p for p in mem.verify().problems if "vector" in p]
        assert mem.search(vec, k=1)[0][0].name == "Élise"
