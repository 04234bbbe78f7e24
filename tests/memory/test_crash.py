"""Crash safety: a writer killed with SIGKILL at random moments loses no acknowledged edit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rap_edge.memory import Memory

WRITER = Path(__file__).with_name("_crash_writer.py")
KILLS = 50


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_edit(tmp_path: Path) -> None:
    Memory.init(tmp_path / "m").close()
    rnd = random.Random(1234)
    expected: dict[str, str] = {}  # name -> info, for acknowledged, not-removed concepts
    removed: set[str] = set()
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    total_acks = 0
    mid_edit_kills = 0
    run = -1
    # At least KILLS kills, and more (up to 3x) while the writer has had fewer than KILLS edits
    # acknowledged: on a busy machine an edit takes longer than the random wait, and the test
    # must still see edits land between kills rather than fail for lack of them.
    while (run := run + 1) < KILLS or (total_acks <= KILLS and run < 3 * KILLS):
        errors = tmp_path / f"writer{run}.err"
        with errors.open("w") as err_file:
            proc = subprocess.Popen(
                [sys.executable, str(WRITER), str(tmp_path / "m"), str(run)],
                stdout=subprocess.PIPE,
                stderr=err_file,
                text=True,
                env=env,
            )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if first.strip() != "READY":
            proc.kill()
            proc.wait(timeout=30)
            pytest.fail(f"writer did not start: {first!r} {errors.read_text()[-2000:]}")
        time.sleep(rnd.uniform(0.0, 0.35))
        proc.send_signal(signal.SIGKILL)
        # Read through the same buffered stream as readline() (communicate() would skip
        # whatever readline() had already buffered).
        out = proc.stdout.read()
        proc.stdout.close()
        assert proc.wait(timeout=30) == -signal.SIGKILL, errors.read_text()[-2000:]
        in_flight: list[str] = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "TRY":
                in_flight = parts[1:]
                continue
            # A line cut by the kill is not an acknowledgement.
            if len(parts) < 2 or parts[0] not in {"ADD", "UPD", "DEL"}:
                continue
            in_flight = []
            total_acks += 1
            if parts[0] == "ADD":
                expected[parts[1]] = "v0"
            elif parts[0] == "UPD" and len(parts) == 3:
                expected[parts[1]] = parts[2]
            elif parts[0] == "DEL":
                expected.pop(parts[1], None)
                removed.add(parts[1])
        mid_edit_kills += bool(in_flight)
        with Memory(tmp_path / "m") as mem:
            report = mem.verify()
            assert report.ok, f"run {run}: {report.problems}"
            stored = {c.name: c.info for c in mem.list_concepts()}
            # The one edit in flight at the kill may or may not have landed; both are fine.
            if in_flight[:1] == ["ADD"] and in_flight[1] in stored:
                expected[in_flight[1]] = "v0"
            elif in_flight[:1] == ["UPD"] and stored.get(in_flight[1]) == in_flight[2]:
                expected[in_flight[1]] = in_flight[2]
            elif in_flight[:1] == ["DEL"] and in_flight[1] not in stored:
                expected.pop(in_flight[1], None)
                removed.add(in_flight[1])
            assert stored == expected, f"run {run}: database differs from acknowledged edits"
            # The derived index agrees with the database after every crash.
            if mem.encoders():
                n = len(mem.search(np.ones(64, dtype=np.float32), k=1000)[0])
                assert n == len(stored), f"run {run}: index has {n}, database {len(stored)}"
                keys = {int(k) for k in mem._indexes["e"].index.keys}
                rows = {r[0] for r in mem._conn().execute("SELECT id FROM vectors")}
                assert keys == rows, f"run {run}: index keys differ from the database"
    assert mid_edit_kills > run // 2, "most kills must land in the middle of an edit"
    assert total_acks > KILLS, "the writer must get edits acknowledged between kills"
