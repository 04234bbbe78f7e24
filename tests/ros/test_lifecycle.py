"""The lifecycle node (``rap_edge_lifecycle_node``) through every transition, over real DDS.

One run of ``tests/ros/_lifecycle_probe.py`` through ``scripts/netns_run.sh`` (private network
namespace, only lo): a failed configure, the bring-up script, deactivate, cleanup, configure
and activate again, the shutdown transition, and autostart. Real models and photos; Barack is
enrolled before the nodes start.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.ros.conftest import NETNS_RUN, ROOT, SKIP_EXIT, _last_line, _run_group

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Exported

pytestmark = [pytest.mark.ros, pytest.mark.network, pytest.mark.slow]

PROBE_TIMEOUT_S = 400  # three nodes load the models; a busy 2-core machine is slow at it
BAD_LOG = ("Traceback", "core dumped", "Aborted", "terminate called")


@pytest.fixture(scope="module")
def run(
    ros_ws: Path, face_models: Exported, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    del ros_ws
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FaceEmbedder, FaceModels, embed_faces_in_memory

    tmp = tmp_path_factory.mktemp("lifecycle")
    photos = {p.stem: str(p) for p in face_models.photos}
    models = FaceModels.load(face_models.out, provider="cpu")
    with Memory.init(tmp / "memory") as mem:
        mem.add("Barack", images=[photos["obama"]], category="person")
        assert embed_faces_in_memory(mem, FaceEmbedder(models)) == 1
    (tmp / "logs").mkdir()
    cfg = {
        "memory": str(tmp / "memory"),
        "models": str(face_models.out),
        "photos": photos,
        "lifecycle_logs": str(tmp / "logs"),
    }
    (tmp / "probe.json").write_text(json.dumps(cfg))
    proc = _run_group(
        [
            str(NETNS_RUN),
            "python",
            str(ROOT / "tests" / "ros" / "_lifecycle_probe.py"),
            str(tmp / "probe.json"),
        ],
        PROBE_TIMEOUT_S,
        env={
            "ROS_DOMAIN_ID": "65",
            "ROS_LOG_DIR": str(tmp / "ros_log"),
            "RCUTILS_COLORIZED_OUTPUT": "0",
        },
    )
    if proc is None:
        pytest.fail(f"the lifecycle probe did not finish in {PROBE_TIMEOUT_S} s")
    if proc.returncode == SKIP_EXIT:
        pytest.skip(_last_line(proc.stderr))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in summary, json.dumps(summary, indent=1)[-6000:]
    return summary


def test_in_a_namespace_with_only_lo(run: dict[str, Any]) -> None:
    assert run["interfaces"] == ["lo"]


def test_a_failed_configure_stays_unconfigured_with_the_reason(run: dict[str, Any]) -> None:
    bad = run["bad"]
    assert bad["initial"] == "unconfigured"
    assert bad["configure"] == [False, "unconfigured"]
    assert bad["alive_after"]
    assert "configure failed, staying unconfigured:" in bad["log"]
    assert "/nonexistent/rap-edge-models" in bad["log"]
    assert bad["shutdown"] == [True, "finalized"]
    assert bad["exit"] == 0, bad["log"]
    for text in BAD_LOG:
        assert text not in bad["log"]


def test_bringup_script_configures_and_activates(run: dict[str, Any]) -> None:
    good = run["good"]
    assert good["initial"] == "unconfigured"
    assert good["no_services_unconfigured"]
    assert good["activate_unconfigured"] == [False, "unconfigured"]
    assert "refused in state unconfigured" in good["log"]
    code, stdout, stderr = good["bringup"]
    assert code == 0, stderr
    assert stdout.splitlines() == [
        "/rap_edge: configure ok, now inactive",
        "/rap_edge: activate ok, now active",
    ]
    assert good["state_after_bringup"] == "active"
    assert good["recognised_active"]


def test_deactivate_cleanup_and_again(run: dict[str, Any]) -> None:
    good = run["good"]
    assert good["deactivate"] == [True, "inactive"]
    assert good["unsubscribed_inactive"]  # no camera subscription while inactive
    assert good["list_inactive"] == ["Barack"]  # the memory is still loaded
    assert good["cleanup"] == [True, "unconfigured"]
    assert good["services_gone"]
    assert "cleaned up: runtime stopped, memory closed" in good["log"]
    assert good["configure_again"] == [True, "inactive"]
    assert good["activate_again"] == [True, "active"]
    assert good["subscribed_again"]
    assert good["recognised_again"]


def test_shutdown_transition_ends_the_process(run: dict[str, Any]) -> None:
    good = run["good"]
    assert good["shutdown"] == [True, "finalized"]
    assert good["exit"] == 0, good["log"]
    assert good["exit_s"] < 10
    for text in BAD_LOG:
        assert text not in good["log"], good["log"]


def test_autostart_comes_up_active_and_stops_on_sigint(run: dict[str, Any]) -> None:
    auto = run["autostart"]
    assert auto["recognised"], auto["log"]
    assert auto["state"] == "active"
    assert auto["exit"] == 0, auto["log"]
    assert auto["exit_s"] < 10
    for text in BAD_LOG:
        assert text not in auto["log"], auto["log"]
