"""bench/soak.py's node part in seconds: the ROS node inside scripts/netns_run.sh (plumbing).

Rows of ~5 s instead of minutes; the JSON's shape and the plot are checked, not the verdicts
(see ``tests/bench/test_soak.py`` for the live part). Skipped where no network namespace can
be made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.bench.test_soak import _check_part, _soak

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.ros
def test_node_part_in_the_network_namespace(
    ros_ws: Path, face_models: Exported, tmp_path: Path
) -> None:
    del ros_ws  # built (or brought up to date) first
    result = _soak(tmp_path, face_models, "--minutes", "0", "--node-minutes", "0.4", timeout=300)
    node = result["node"]
    if node.get("skipped"):
        pytest.skip(f"no network namespace here: {node['skipped']}")
    assert node["error"] is None
    assert node["namespace_interfaces"] == ["lo"]
    assert node["node_exit"] == 0
    _check_part(node, rows=5, sources={"/soak/cam_a/image", "/soak/cam_b/image"})
