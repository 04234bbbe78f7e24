"""What ``bench/soak.py`` samples from ``/proc``: a process's RSS, open descriptors, threads.

Plain standard library, so that the ROS probe (``bench/_soak_probe.py``, the ROS venv) samples
the node's process with the same code as the soak samples its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROC = Path("/proc")


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _kib(value: str) -> float:
    """``"1234 kB"`` -> MiB."""
    return int(value.split(maxsplit=1)[0]) / 1024.0


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (direct children only), by scanning ``/proc``."""
    kids: list[int] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.append(int(entry.name))
    return sorted(kids)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) that process ``pid`` has used so far, in seconds."""
    stat = (PROC / str(pid) / "stat").read_text()
    fields = stat.rsplit(")", 1)[-1].split()  # fields[0] is the state (field 3)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample(pid: int | None = None) -> dict[str, Any]:
    """One sample of process ``pid`` (default: this one) and of its direct children.

    Returns:
        ``rss_mb`` (VmRSS, MiB), ``fds`` (entries of ``/proc/<pid>/fd``), ``threads``,
        ``children`` (their count), ``children_rss_mb`` (their VmRSS summed) and
        ``children_names`` (their ``Name``), ``cpu_s`` and ``children_cpu_s`` (CPU seconds
        used so far by the process and by its live children).

    Raises:
        OSError: the process does not exist (any more).
    """
    pid = os.getpid() if pid is None else pid
    st = _status(pid)
    fds = sum(1 for _ in (PROC / str(pid) / "fd").iterdir())
    kids_rss = kids_cpu = 0.0
    names: list[str] = []
    for kid in children(pid):
        try:
            kst = _status(kid)
            kids_cpu += cpu_seconds(kid)
        except OSError:
            continue
        kids_rss += _kib(kst.get("VmRSS", "0 kB"))
        names.append(kst.get("Name", "?"))
    return {
        "rss_mb": round(_kib(st["VmRSS"]), 2),
        "fds": fds,
        "threads": int(st["Threads"]),
        "children": len(names),
        "children_rss_mb": round(kids_rss, 2),
        "children_names": sorted(names),
        "cpu_s": round(cpu_seconds(pid), 2),
        "children_cpu_s": round(kids_cpu, 2),
    }


def cpu_pct(now: dict[str, Any], before: dict[str, Any], seconds: float) -> dict[str, float]:
    """CPU use between two samples, in percent of one core (process, children)."""
    return {
        "process": round(100.0 * (now["cpu_s"] - before["cpu_s"]) / seconds, 1),
        "children": round(
            100.0 * max(0.0, now["children_cpu_s"] - before["children_cpu_s"]) / seconds, 1
        ),
    }


def load1() -> float:
    """The 1-minute load average of the machine."""
    return round(os.getloadavg()[0], 2)


# -- what both parts feed and edit --------------------------------------------------------------

SHIFTS = 6  # frames per group: the group moved by 0..5 px (tracks move; distinct arrays)
#: The edit cycle of every row, as fractions of the row: the concept is added (with a real
#: photo, embedded at once), its info updated, then removed (forgotten) again.
EDITS = (("add", 0.05), ("update", 0.35), ("remove", 0.5))
EDIT_NAME = "Joe"
EDIT_INFO = ("Joe is our neighbour; he walks his dog at seven", "Joe moved to the blue house")


def frame_index(i: int, groups: int, segment_frames: int) -> int:
    """Which prepared frame the ``i``-th submit of a source shows.

    The prepared frames are ``groups`` x :data:`SHIFTS` (group-major); each group is shown
    for ``segment_frames`` submits, then the next one (the scene changes, tracks change).
    """
    group = (i // max(1, segment_frames)) % groups
    return group * SHIFTS + i % SHIFTS


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` percentile (0..100) of ``values`` (linear interpolation); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q / 100.0 * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 2)


def dir_mb(path: Path) -> float:
    """Bytes of the regular files under ``path``, in MiB (0 when it does not exist)."""
    total = 0
    for p in path.rglob("*") if path.exists() else ():
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:  # removed meanwhile
            continue
    return round(total / 2**20, 3)
