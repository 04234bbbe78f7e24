"""The node's operational side over DDS in a netns: /diagnostics, JPEG debug images, cameras.

One run of ``tests/ros/_ops_probe.py`` through ``scripts/netns_run.sh`` (private network
namespace, only lo). Real models and photos; Barack is enrolled before the node starts.
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

PROBE_TIMEOUT_S = 300
OK, WARN, ERROR = 0, 1, 2
STALE_S = 2.0  # the probe's stale_after_s
CAMERA = "rap_edge: camera /cam_a/image_raw"


@pytest.fixture(scope="module")
def run(
    ros_ws: Path, face_models: Exported, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    del ros_ws
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FaceEmbedder, FaceModels, embed_faces_in_memory

    tmp = tmp_path_factory.mktemp("ops")
    photos = {p.stem: str(p) for p in face_models.photos}
    models = FaceModels.load(face_models.out, provider="cpu")
    with Memory.init(tmp / "memory") as mem:
        mem.add("Barack", images=[photos["obama"]], category="person")
        assert embed_faces_in_memory(mem, FaceEmbedder(models)) == 1
    cfg = {
        "memory": str(tmp / "memory"),
        "models": str(face_models.out),
        "photos": photos,
        "log": str(tmp / "node.log"),
        "tmp": str(tmp),
    }
    (tmp / "probe.json").write_text(json.dumps(cfg))
    proc = _run_group(
        [
            str(NETNS_RUN),
            "python",
            str(ROOT / "tests" / "ros" / "_ops_probe.py"),
            str(tmp / "probe.json"),
        ],
        PROBE_TIMEOUT_S,
        env={
            "ROS_DOMAIN_ID": "66",
            "ROS_LOG_DIR": str(tmp / "ros_log"),
            "RCUTILS_COLORIZED_OUTPUT": "0",
        },
    )
    log = (tmp / "node.log").read_text() if (tmp / "node.log").exists() else ""
    if proc is None:
        pytest.fail(
            f"the ops probe did not finish in {PROBE_TIMEOUT_S} s; node log:\n{log[-3000:]}"
        )
    if proc.returncode == SKIP_EXIT:
        pytest.skip(_last_line(proc.stderr))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    summary["log"] = log
    assert "error" not in summary, json.dumps(summary, indent=1)[-6000:]
    assert summary["matched"], log[-3000:]
    return summary


def test_in_a_namespace_with_only_lo(run: dict[str, Any]) -> None:
    assert run["interfaces"] == ["lo"]


def test_a_camera_without_frames_is_an_error(run: dict[str, Any]) -> None:
    before = run["diagnostics"]["before_frames"]
    assert before is not None, run["log"][-3000:]
    assert before["name"] == CAMERA
    assert before["level"] == ERROR
    assert before["message"].startswith("no frames yet for ")
    assert before["hardware_id"] == "/cam_a/image_raw"
    assert before["values"]["received"] == "0"


def test_frames_flowing_are_ok_with_rates_and_the_runtime_status(run: dict[str, Any]) -> None:
    d = run["diagnostics"]
    assert d["recognised"]
    flowing = d.get("flowing")
    assert flowing is not None, run["log"][-3000:]
    assert flowing["level"] == OK
    values = flowing["values"]
    assert int(values["processed"]) > 0
    assert float(values["input_hz"]) > 0
    assert values["queue_wait_p99_ms"] != ""
    assert set(values) >= {"stale", "dropped", "queue_wait_p50_ms", "seconds_since_frame"}
    (runtime,) = [s for s in d["flowing_all"] if s["name"] == "rap_edge: runtime"]
    assert runtime["level"] == OK
    assert runtime["values"]["provider"] == "cpu"
    assert runtime["values"]["memory_concepts"] == "1"
    assert runtime["values"]["llm"] == "off (describe is false)"


def test_a_stream_that_stops_is_an_error_after_the_threshold(run: dict[str, Any]) -> None:
    d = run["diagnostics"]
    after = d.get("after_stop")
    assert after is not None, run["log"][-3000:]
    assert after["level"] == ERROR
    assert after["message"].startswith("no frames for ")
    # never before the threshold (the last frame was published before `stopped`)
    assert float(after["values"]["seconds_since_frame"]) >= STALE_S
    assert d["error_after_s"] >= STALE_S - 0.5  # the last frame may arrive just before stop
    assert run["exit"] == 0


def test_annotated_images_only_while_subscribed(run: dict[str, Any]) -> None:
    a = run["annotated"]
    # Frames were processed with nobody subscribed to either topic: none drawn or published.
    unsubscribed = a["unsubscribed"]
    assert unsubscribed is not None
    assert unsubscribed["annotated_published"] == "0"
    assert unsubscribed["annotated_compressed_published"] == "0"
    assert a["matched"]
    subscribed = a["subscribed"]
    assert subscribed, run["log"][-3000:]
    assert int(subscribed["annotated_compressed_published"]) > 0
    assert subscribed["annotated_published"] == "0"  # the raw topic still has no subscriber


def test_annotated_compressed_is_a_jpeg_at_the_set_quality(run: dict[str, Any]) -> None:
    a = run["annotated"]
    assert a.get("format") == "jpeg", run["log"][-3000:]
    assert a["shape"] == [480, 640, 3]
    assert a["stamp_nanosec"] == 11  # the source frame's header
    assert a["dc_quantiser"] == a["expected_dc_quantiser"] == 13  # quality 60, not the default


def test_a_bad_camera_setting_is_refused_naming_camera_and_field(run: dict[str, Any]) -> None:
    code, output = run["bad_settings"]
    assert code == 1, output
    assert "cannot start:" in output
    assert "camera '/cam_a/image_raw': max_rate must be 0 (every frame) to 1000" in output
    assert "Traceback" not in output


def test_nothing_is_recognised_in_an_ignore_zone(run: dict[str, Any]) -> None:
    z = run["zone"]
    assert z["arrays"] >= 3, run["log"][-3000:]
    assert z["recognitions"] == [[]] * z["arrays"]  # Barack is named on /cam_a, not here
    assert run["diagnostics"]["recognised"]


def test_strangers_are_listed_dismissed_and_named_through_services(run: dict[str, Any]) -> None:
    s = run["strangers"]
    first = s.get("first")
    assert first is not None, run["log"][-3000:]
    assert first["crops"] >= 1 and first["count"] >= 1
    assert first["cameras"] == ["/cam_a/image_raw"]
    assert s["first_files"] == first["crops"]  # the crops are on disk
    assert s["dismissed"][0], s["dismissed"]
    assert not s["after_dismiss_exists"]  # dismissed: its crops are deleted
    assert first["id"] not in s["after_dismiss_listed"]
    ok, message = s["dismiss_missing"]
    assert not ok
    assert "no unknown-face cluster 'u_nobody'" in message
    assert s["second_id"] != first["id"]
    ok, message, name = s["named"]
    assert ok, message
    assert name == "Joe"
    assert s["recognised"], run["log"][-3000:]
    assert s["second_id"] not in s["after_name_listed"]  # enrolled: no longer a stranger
