"""Forgetting is real: after remove (and its compaction) no byte of the vectors remains."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.memory import Memory
from tests.conftest import png_bytes, unit

if TYPE_CHECKING:
    from pathlib import Path


def _all_bytes(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _where(needle: bytes, files: dict[Path, bytes]) -> list[str]:
    return [p.name for p, data in files.items() if needle in data]


@pytest.mark.parametrize("index_dtype", ["f16", "f32"])
def test_removed_vectors_leave_no_bytes(tmp_path: Path, index_dtype: str) -> None:
    rng = np.random.default_rng(11)
    gone, kept = unit(rng, 128, 2), unit(rng, 128, 1)
    gone_image = png_bytes(1, size=24)
    index_patterns = {"f16": np.float16, "f32": np.float32}
    with Memory.init(tmp_path / "m", index_dtype=index_dtype) as mem:  # type: ignore[arg-type]
        mem.add("gone", images=[gone_image, png_bytes(2)], vectors=gone, encoder="e")
        mem.add("kept", images=[png_bytes(3)], vectors=kept, encoder="e")
        # Many edits in between so the vectors' pages are copied around.
        for i in range(20):
            mem.update("kept", info=f"edit {i}")
        needles = [v.astype("<f4").tobytes() for v in gone]
        needles += [v.astype(index_patterns[index_dtype]).tobytes() for v in gone]
        before = _all_bytes(mem.path)
        # Positive control: the bytes we look for are there before removal.
        assert all(_where(n, before) for n in needles)
        assert _where(gone_image, before)
        mem.remove("gone")
        after = _all_bytes(mem.path)
        for needle in needles:
            assert _where(needle, after) == []
        assert _where(gone_image, after) == []
        # The other concept's vector is still stored and found.
        assert _where(kept[0].astype("<f4").tobytes(), after)
        assert [h.name for h in mem.search(gone[0], k=5)[0]] == ["kept"]
        assert mem.verify().ok


def test_remove_image_also_forgets_its_vector(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    v = unit(rng, 64, 2)
    with Memory.init(tmp_path / "m") as mem:
        c = mem.add("a", images=[png_bytes(1), png_bytes(2)], vectors=v, encoder="e")
        mem.remove_image(c.images[1].id)
        files = _all_bytes(mem.path)
        assert _where(v[1].astype("<f4").tobytes(), files) == []
        assert _where(v[1].astype(np.float16).tobytes(), files) == []
        assert _where(v[0].astype("<f4").tobytes(), files)


def test_vacuum_removes_orphans_and_shrinks(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    with Memory.init(tmp_path / "m") as mem:
        for i in range(30):
            mem.add(f"c{i}", images=[png_bytes(i)], vectors=unit(rng, 256), encoder="e")
        orphan = mem.path / "images" / "ab" / ("ab" + "0" * 62 + ".png")
        orphan.parent.mkdir(exist_ok=True)
        orphan.write_bytes(png_bytes(999))
        assert any("orphan" in w for w in mem.verify().warnings)
        for i in range(25):
            mem.remove(f"c{i}")
        size_before = (mem.path / "memory.db").stat().st_size
        result = mem.vacuum()
        assert result == {"orphan_files_removed": 1, "vectors_indexed": 5}
        assert not orphan.exists()
        assert (mem.path / "memory.db").stat().st_size < size_before
        report = mem.verify()
        assert report.ok and report.warnings == ()


def test_an_interrupted_forget_is_finished_by_the_next_open(tmp_path: Path) -> None:
    """Issue 14, item 3: a kill right after a forget's commit leaves its upkeep due, and it is
    not lost: verify says so, and the next writable open deletes the bytes."""
    rng = np.random.default_rng(14)
    gone = unit(rng, 32)
    gone_image = png_bytes(3, size=24)
    with Memory.init(tmp_path / "m") as mem:
        mem.add("gone", images=[gone_image], vectors=gone, encoder="e")
        mem.add("kept", images=[png_bytes(4)], vectors=unit(rng, 32), encoder="e")
        with pytest.MonkeyPatch.context() as patch:
            # What a SIGKILL between the commit and the upkeep leaves.
            patch.setattr(Memory, "_finish_edit", lambda *_a, **_k: None)
            mem.remove("gone")
    needles = [gone[0].astype("<f4").tobytes(), gone[0].astype(np.float16).tobytes(), gone_image]
    assert any(_where(n, _all_bytes(tmp_path / "m")) for n in needles)
    with Memory(tmp_path / "m", readonly=True) as ro:
        report = ro.verify()
        assert report.ok and any("upkeep is unfinished" in w for w in report.warnings)
    Memory(tmp_path / "m").close()
    after = _all_bytes(tmp_path / "m")
    assert [n for n in needles if _where(n, after)] == []
    with Memory(tmp_path / "m") as mem:
        report = mem.verify()
        assert report.ok and report.warnings == (), report.warnings
        assert [h.name for h in mem.search(gone[0], k=5)[0]] == ["kept"]
