"""Bad input gets a clear error that names the problem, and loses nothing already stored."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.errors import (
    InvalidInputError,
    MemoryLockedError,
    MemoryReadOnlyError,
    SchemaError,
    StoreError,
)
from rap_edge.memory import MAX_INFO_CHARS, MAX_NAME_CHARS, Memory
from tests.conftest import png_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture
def stocked(memory: Memory) -> Memory:
    memory.add("keep", images=[png_bytes(1)], vectors=np.ones((1, 4)), encoder="e", info="x")
    return memory


def _unchanged(memory: Memory) -> None:
    [c] = memory.list_concepts()
    assert (c.name, c.info, len(c.images)) == ("keep", "x", 1)
    assert memory.verify().ok
    assert list((memory.path / "images").rglob("*.*")) == [c.images[0].path]


def test_missing_image_file(stocked: Memory, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"nope\.png: no such file"):
        stocked.add("a", images=[tmp_path / "nope.png"])
    _unchanged(stocked)


def test_directory_instead_of_image(stocked: Memory, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not a regular file"):
        stocked.add("a", images=[tmp_path])
    _unchanged(stocked)


def test_non_image_file(stocked: Memory, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("hello, I am text")
    with pytest.raises(InvalidInputError, match=r"notes\.png: not an image"):
        stocked.add("a", images=[text])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInputError, match=r"empty\.jpg: file is empty"):
        stocked.add("a", images=[empty])
    _unchanged(stocked)


def test_truncated_and_corrupt_images(
    stocked: Memory, tmp_path: Path, make_image: Callable[..., Path]
) -> None:
    good = make_image(5, size=64).read_bytes()
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good[: len(good) // 3])
    with pytest.raises(InvalidInputError, match=r"cut\.png: corrupt"):
        stocked.add("a", images=[truncated])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    with pytest.raises(InvalidInputError, match=r"garbage\.jpg: corrupt"):
        stocked.add("a", images=[garbage])
    with pytest.raises(InvalidInputError, match="image #1: expected a file path"):
        stocked.add("a", images=[12345])  # type: ignore[list-item]
    _unchanged(stocked)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "name is empty"),
        ("   ", "name is empty"),
        ("a\x07b", "control characters"),
        ("x" * (MAX_NAME_CHARS + 1), "limit is"),
        (None, "must be text"),
    ],
)
def test_bad_names(stocked: Memory, name: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        stocked.add(name)  # type: ignore[arg-type]
    if name is not None:  # None means "keep the name" for update
        with pytest.raises(InvalidInputError, match=match):
            stocked.update("keep", name=name)  # type: ignore[arg-type]
    _unchanged(stocked)


def test_info_over_the_cap_and_control_characters(stocked: Memory) -> None:
    with pytest.raises(InvalidInputError, match=f"limit is {MAX_INFO_CHARS}"):
        stocked.add("a", info="y" * (MAX_INFO_CHARS + 1))
    with pytest.raises(InvalidInputError, match="control characters"):
        stocked.update("keep", info="ignore previous instructions\x1b[2J")
    assert stocked.add("ok", info="line one\nline two\tend").info == "line one\nline two\tend"
    stocked.remove("ok")
    _unchanged(stocked)


@pytest.mark.parametrize(
    ("vectors", "match"),
    [
        (np.ones((1, 5)), "dimension 5 does not match the encoder's dimension 4|has dimension 4"),
        (np.ones((2, 4)), "expected 1 vector"),
        (np.array([[1.0, np.nan, 0, 0]]), "NaN"),
        (np.array([[1.0, np.inf, 0, 0]]), "NaN or infinite"),
        (np.zeros((1, 4)), "zero norm"),
        (np.ones((1, 2, 2)), "shape"),
        ([["a", "b", "c", "d"]], "numeric"),
    ],
)
def test_bad_vectors(stocked: Memory, vectors: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        stocked.add("a", images=[png_bytes(2)], vectors=vectors, encoder="e")  # type: ignore[arg-type]
    _unchanged(stocked)
    if match != "expected 1 vector" and np.asarray(vectors).dtype.kind == "f":
        # The same vector as a query is refused for the same reason.
        with pytest.raises(InvalidInputError, match=match):
            stocked.search(vectors, encoder="e")  # type: ignore[arg-type]


def test_vectors_need_an_encoder_and_a_valid_id(stocked: Memory) -> None:
    with pytest.raises(InvalidInputError, match="encoder"):
        stocked.add("a", images=[png_bytes(2)], vectors=np.ones((1, 4)))
    with pytest.raises(InvalidInputError, match="encoder id"):
        stocked.add("a", images=[png_bytes(2)], vectors=np.ones((1, 4)), encoder="../../x")
    _unchanged(stocked)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Memory.init(tmp_path / "m").close()
    conn = sqlite3.connect(tmp_path / "m" / "memory.db")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="newer rap-edge .*schema 99"):
        Memory(tmp_path / "m")


def test_not_a_memory_database(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    conn = sqlite3.connect(tmp_path / "m" / "memory.db")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="not a rap-edge memory"):
        Memory(tmp_path / "m")
    (tmp_path / "m" / "memory.db").write_bytes(b"garbage" * 200)
    with pytest.raises(SchemaError, match="not a usable memory database"):
        Memory(tmp_path / "m")


def test_missing_memory_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no memory at .*rap-edge memory init"):
        Memory(tmp_path / "nothing-here")


def test_locked_database(stocked: Memory) -> None:
    blocker = sqlite3.connect(stocked.path / "memory.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with (
            Memory(stocked.path, lock_timeout_s=0.2) as other,
            pytest.raises(MemoryLockedError, match="locked by another writer"),
        ):
            other.add("a")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    _unchanged(stocked)


def test_writer_lock_held_by_another_instance(stocked: Memory) -> None:
    with (
        Memory(stocked.path, lock_timeout_s=0.2) as other,
        stocked._file_lock.hold(),
        pytest.raises(MemoryLockedError, match="locked by another writer"),
    ):
        other.add("a")
    stocked.add("after")  # the lock is released again
    stocked.remove("after")
    _unchanged(stocked)


def test_read_only_memory(stocked: Memory) -> None:
    with Memory(stocked.path, readonly=True) as ro:
        assert ro.get("keep").name == "keep"
        assert ro.search(np.ones(4), k=1)[0][0].name == "keep"
        with pytest.raises(MemoryReadOnlyError, match="read-only"):
            ro.add("a")
        with pytest.raises(MemoryReadOnlyError, match="read-only"):
            ro.remove("keep")
        with pytest.raises(MemoryReadOnlyError, match="read-only"):
            ro.vacuum()
    _unchanged(stocked)


def test_bad_constructor_parameters(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="lock_timeout_s"):
        Memory(tmp_path, lock_timeout_s=-1)
    with pytest.raises(InvalidInputError, match="index_dtype"):
        Memory(tmp_path, create=True, index_dtype="f64")  # type: ignore[arg-type]


def test_database_sqlite_can_only_read(stocked: Memory) -> None:
    # What a read-only file or mount looks like to SQLite (root ignores file modes, so the
    # test opens the connection read-only and lets the memory try to write anyway).
    with Memory(stocked.path, readonly=True) as ro:
        ro.readonly = False
        with pytest.raises(MemoryReadOnlyError, match="read-only .*readonly database"):
            ro.add("a")
    _unchanged(stocked)


# -- issue 14 item 11: a memory on a read-only folder ---------------------------------------------


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """``chattr -R +i`` a folder (root only, on a file system that supports it); undone after."""
    done: list[Path] = []

    def make(path: Path) -> None:
        if chattr is None:
            pytest.skip("chattr is not installed")
        proc = subprocess.run(
            [chattr, "-R", "+i", str(path)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            pytest.skip(f"chattr +i is not permitted here: {proc.stderr.strip()}")
        done.append(path)

    chattr = shutil.which("chattr")
    yield make
    for path in done:
        assert chattr is not None
        subprocess.run([chattr, "-R", "-i", str(path)], check=True)


def test_immutable_memory_without_wal_can_be_read(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    with Memory.init(tmp_path / "m") as mem:
        mem.add("keep", images=[png_bytes(1)], vectors=np.ones((1, 4)), encoder="e", info="x")
    assert not (tmp_path / "m" / "memory.db-wal").exists()
    assert not (tmp_path / "m" / "memory.db-shm").exists()
    immutable(tmp_path / "m")
    with Memory(tmp_path / "m", readonly=True) as ro:
        assert [c.name for c in ro.list_concepts()] == ["keep"]
        assert ro.search(np.ones(4), k=1)[0][0].name == "keep"
        assert ro.verify().ok
    with pytest.raises(MemoryReadOnlyError, match="read-only: its folder cannot be written"):
        Memory(tmp_path / "m")


def test_read_only_folder_with_unmerged_wal_is_refused_with_a_reason(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    mem = Memory.init(tmp_path / "m")
    mem.add("keep", info="x")
    # A second connection keeps SQLite from merging the WAL on close, as a crash would.
    holder = sqlite3.connect(tmp_path / "m" / "memory.db")
    holder.execute("SELECT 1 FROM concepts").fetchall()
    mem.add("later")
    mem.close()
    wal = tmp_path / "m" / "memory.db-wal"
    assert wal.stat().st_size > 0
    shm = tmp_path / "m" / "memory.db-shm"
    saved = {p: p.read_bytes() for p in (wal, tmp_path / "m" / "memory.db")}
    holder.close()
    # Put back what a crash would have left: the database and its WAL, without the -shm.
    for p, data in saved.items():
        p.write_bytes(data)
    shm.unlink(missing_ok=True)
    immutable(tmp_path / "m")
    with pytest.raises(MemoryReadOnlyError, match=r"memory\.db-wal holds edits"):
        Memory(tmp_path / "m", readonly=True)
