"""One writer editing while several threads search."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.errors import ConceptNotFoundError
from rap_edge.memory import Memory, _index
from tests.conftest import png_bytes, unit

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

DIM = 32


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_searches_during_edits_never_name_a_removed_concept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    if mode == "hnsw":  # force the graph search that large memories use
        monkeypatch.setattr(_index, "EXACT_BELOW_SCALARS", 0)
    rng = np.random.default_rng(21)
    with Memory.init(tmp_path / "m") as mem:
        for i in range(20):
            mem.add(f"base{i}", images=[png_bytes(i)], vectors=unit(rng, DIM), encoder="e")
        removed: set[str] = set()
        removed_lock = threading.Lock()
        errors: list[BaseException] = []
        stop = threading.Event()
        searches = [0]

        def writer() -> None:
            wrng = np.random.default_rng(22)
            live: list[tuple[str, np.ndarray]] = []
            try:
                for i in range(60):
                    vec = unit(wrng, DIM)
                    c = mem.add(f"w{i}", images=[png_bytes(1000 + i)], vectors=vec, encoder="e")
                    live.append((c.id, vec[0]))
                    if i % 3 == 2:
                        cid, _ = live.pop(0)
                        mem.remove(cid)
                        with removed_lock:
                            removed.add(cid)
                    if i % 7 == 0:
                        mem.update(f"base{i % 20}", info=f"edit {i}")
            except BaseException as err:  # noqa: BLE001 - reported by the test
                errors.append(err)
            finally:
                stop.set()

        def reader(seed: int) -> None:
            rrng = np.random.default_rng(seed)
            try:
                while not stop.is_set():
                    with removed_lock:
                        gone = set(removed)
                    for hits in mem.search(unit(rrng, DIM, 4), k=8):
                        named = {h.concept_id for h in hits}
                        assert not named & gone, f"search named removed {named & gone}"
                    searches[0] += 1
            except BaseException as err:  # noqa: BLE001 - reported by the test
                errors.append(err)

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
        threads.append(threading.Thread(target=writer))
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a thread hung"
        assert errors == []
        assert searches[0] > 20, "readers must actually run during the edits"
        assert time.monotonic() - start < 120
        assert len(mem) == 20 + 60 - 20
        assert mem.verify().ok


def test_search_is_not_blocked_while_remove_compacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(23)
    vecs = unit(rng, DIM, 3)
    with Memory.init(tmp_path / "m") as mem:
        for i in range(3):
            mem.add(f"c{i}", images=[png_bytes(i)], vectors=vecs[i : i + 1], encoder="e")
        mem.search(vecs[0])  # load the index
        building, release = threading.Event(), threading.Event()
        real_build = _index.build_index

        def slow_build(*args: object, **kwargs: object) -> object:
            building.set()
            assert release.wait(30), "test did not release the build"
            return real_build(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(_index, "build_index", slow_build)
        remover = threading.Thread(target=mem.remove, args=("c1",))
        remover.start()
        try:
            assert building.wait(30), "remove did not start compacting"
            # The compaction is stuck in its build; searches still run, without c1.
            found: list[set[str]] = []
            searcher = threading.Thread(
                target=lambda: found.append({h.name for h in mem.search(vecs[1], k=3)[0]})
            )
            searcher.start()
            searcher.join(20)
            assert not searcher.is_alive(), "search waited for the compaction"
            assert found == [{"c0", "c2"}]
        finally:
            release.set()
            remover.join(30)
        assert not remover.is_alive()
        assert {h.name for h in mem.search(vecs[1], k=3)[0]} == {"c0", "c2"}
        assert mem.verify().ok


def test_get_of_a_concept_removed_between_its_reads_is_not_found(
    memory: Memory, make_image: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer can remove the concept after its id is resolved.

    The live runtime's describer hit this as an IndexError while edits flowed.
    """
    from rap_edge.memory import _queries

    c = memory.add("ana", images=[make_image(1)])
    monkeypatch.setattr(_queries, "concepts", lambda *_a, **_k: [])
    with pytest.raises(ConceptNotFoundError, match="ana"):
        memory.get(c.name)
