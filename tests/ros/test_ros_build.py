"""ros2_ws builds from pip wheels, and its interfaces work over Fast DDS inside a private netns.

Every DDS participant here runs through scripts/netns_run.sh (unshare --net, only lo, loopback
Fast DDS profile); none touches the host network.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.ros.conftest import (
    BUILD_SCRIPT,
    NETNS_RUN,
    ROOT,
    SKIP_EXIT,
    _run_group,
    run_in_netns,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.ros

LIST_NET = """
import json, os, socket
print(json.dumps({
    "sys": sorted(os.listdir("/sys/class/net")),
    "sysfs_fresh": os.environ.get("RAP_NETNS_SYSFS") == "1",
    "lo_flags": int(open("/sys/class/net/lo/flags").read(), 16),
    "if_nameindex": sorted(name for _, name in socket.if_nameindex()),
    "env": {k: os.environ.get(k) for k in (
        "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
        "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "RMW_IMPLEMENTATION",
        "ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY")},
}))
"""


def test_netns_has_only_lo(ros_ws: Path) -> None:
    proc = run_in_netns(["python", "-c", LIST_NET], 30, env={"ROS_DOMAIN_ID": "61"})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["if_nameindex"] == ["lo"]
    if seen["sysfs_fresh"]:
        assert seen["sys"] == ["lo"]
        assert seen["lo_flags"] & 1, "lo is not up"
    profile = str(ros_ws / "fastdds-lo.xml")
    assert seen["env"] == {
        "FASTRTPS_DEFAULT_PROFILES_FILE": profile,
        "FASTDDS_DEFAULT_PROFILES_FILE": profile,
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": "61",
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "ROS_STATIC_PEERS": None,
        "ROS_LOCALHOST_ONLY": None,
    }


def test_netns_run_refuses_without_a_namespace(tmp_path: Path) -> None:
    # An `unshare` that is not permitted: exit 77, and the command never runs on the host.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "unshare").write_text(
        "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n"
    )
    (fake / "unshare").chmod(0o755)
    marker = tmp_path / "ran"
    proc = subprocess.run(
        [str(NETNS_RUN), "touch", str(marker)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
    )
    assert proc.returncode == SKIP_EXIT
    assert "not permitted" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_interfaces_over_fast_dds(ros_ws: Path) -> None:
    del ros_ws
    proc = run_in_netns(
        ["python", str(ROOT / "tests" / "ros" / "_roundtrip.py")], 60, env={"ROS_DOMAIN_ID": "62"}
    )
    # A profile that does not parse is only logged, and DDS then uses its defaults.
    assert "XMLPARSER" not in proc.stdout + proc.stderr
    assert proc.stdout.strip(), proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, (result, proc.stderr[-3000:])
    assert result["types"]["decisions"] == ["known", "unknown", "uncertain"]
    assert result["list_all"] == [
        ["c_000000000001", "Bo", "dog", ["<bo>"], 3],
        ["c_000000000002", "Anna", "person", [], 5],
    ]
    assert result["list_dog"] == ["Bo"]
    assert result["add"]["success"], result["add"]
    assert result["add"]["image_count"] == 2
    assert json.loads(result["add"]["message"]) == {"checksums": [result["expected_checksum"]] * 2}
    assert result["matched"] >= 1
    assert result["received"] == result["expected"]
    assert result["received"]["recognitions"][1]["score"] == "nan"
    assert set(result["udp_local_addresses"]) <= {"127.0.0.1", "0.0.0.0"}  # noqa: S104


def test_build_is_idempotent(ros_ws: Path) -> None:
    del ros_ws
    proc = _run_group([str(BUILD_SCRIPT)], 60)
    assert proc is not None, "a build with nothing to do took over 60 s"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "skipping pip" in proc.stdout
    assert "installing" not in proc.stdout
