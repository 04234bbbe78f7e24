"""ROS 2 test helpers: build ros2_ws once per session; start DDS only in a private netns.

``ros_ws`` runs ``scripts/ros_build.sh`` (pip wheels, no apt ROS). :func:`run_in_netns` runs a
command through ``scripts/netns_run.sh``: inside ``unshare --net`` with only ``lo`` and the
loopback Fast DDS profile, never on the host network. Where no namespace can be made (exit 77)
the test is skipped.

``ros2_ws/src/rap_edge_ros`` is put on ``sys.path`` so that its pure-Python modules
(``rap_edge_ros.convert``) are tested in the main venv without ROS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ROOT = Path(__file__).resolve().parents[2]
WS = ROOT / "ros2_ws"
BUILD_SCRIPT = ROOT / "scripts" / "ros_build.sh"
NETNS_RUN = ROOT / "scripts" / "netns_run.sh"
SKIP_EXIT = 77  # ros_build.sh: a prerequisite is missing; netns_run.sh: no namespace possible
# A cold build downloads the wheels and compiles the interfaces: ~130 s here on 2 cores.
BUILD_TIMEOUT_S = 900
MAX_TIMEOUT_S = 60

sys.path.insert(0, str(WS / "src" / "rap_edge_ros"))


def pytest_configure(config: pytest.Config) -> None:
    # Until pyproject.toml registers it (harmless twice).
    config.addinivalue_line(
        "markers", "ros: builds ros2_ws from pip ROS 2 wheels and runs DDS inside unshare -n"
    )


def _run_group(
    args: list[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str] | None:
    """Run ``args`` in a session of its own; on timeout kill that session and return None."""
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        sys.stderr.write(
            f"--- {args} timed out; stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}\n"
        )
        return None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


@pytest.fixture(scope="session")
def ros_ws() -> Path:
    """The built workspace (``ros2_ws``): built or brought up to date once per session.

    A missing prerequisite skips (fails on CI, where it is expected to be there); any other
    build failure fails.
    """
    proc = _run_group([str(BUILD_SCRIPT)], BUILD_TIMEOUT_S)
    if proc is None:
        pytest.fail(f"scripts/ros_build.sh did not finish in {BUILD_TIMEOUT_S} s")
    if proc.returncode == SKIP_EXIT:
        reason = f"scripts/ros_build.sh: {_last_line(proc.stderr)}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is expected to have it)")
        pytest.skip(reason)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-6000:]
        pytest.fail(f"scripts/ros_build.sh failed with exit code {proc.returncode}:\n{output}")
    return WS


def run_in_netns(
    cmd: Sequence[str], timeout: float = MAX_TIMEOUT_S, *, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with ``scripts/netns_run.sh`` (ROS environment, private netns, only lo).

    Args:
        cmd: The command and its arguments (``python`` is the ROS venv's there).
        timeout: Seconds before the command's whole process group is killed and the test
            fails; at most 60.
        env: Extra environment variables (for example ``ROS_DOMAIN_ID``).

    Returns:
        The finished process, output as text (any exit code but 77).

    Raises:
        pytest.skip.Exception: when no network namespace can be made here (exit code 77).
    """
    if not 0 < timeout <= MAX_TIMEOUT_S:
        msg = f"timeout must be in (0, {MAX_TIMEOUT_S}] s, not {timeout}"
        raise ValueError(msg)
    # A session of its own, so that a timeout kills the command and everything it started.
    proc = _run_group([str(NETNS_RUN), *cmd], timeout, env)
    if proc is None:
        pytest.fail(
            f"{list(cmd)} did not finish in {timeout} s inside the network namespace "
            f"(its output is in the captured stderr)"
        )
    if proc.returncode == SKIP_EXIT:
        pytest.skip(_last_line(proc.stderr))
    return proc
