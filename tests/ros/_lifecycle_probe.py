"""Drive the lifecycle node through every transition over DDS; run ONLY via scripts/netns_run.sh.

``python tests/ros/_lifecycle_probe.py CONFIG.json`` (the ROS venv's Python; the config is
``tests/ros/_node_probe.py``'s plus ``lifecycle_logs``, a folder for the nodes' logs):

1. a lifecycle node whose ``models`` folder does not exist: ``configure`` fails, the node stays
   *unconfigured*, alive, with the reason in its log; ``shutdown`` then ends the process;
2. a good one brought up by ``python -m rap_edge_ros.bringup`` (configure, activate); Barack
   frames are recognised; ``deactivate`` removes its camera subscription (services stay);
   ``cleanup`` removes its services; ``configure`` + ``activate`` again recognise Barack
   again; ``shutdown`` ends the process with exit code 0;
3. one started with ``autostart:=true`` recognises Barack with no transition requested, and
   stops on SIGINT with exit code 0.

It prints one JSON line (tests/ros/test_lifecycle.py asserts on it). Every wait is bounded
and waits for what is asserted.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import cv2
import rclpy
from _node_probe import START_S, STEP_S, TOPIC_A, canvas, image_msg, interfaces, names
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rap_edge_msgs.msg import RecognitionArray
from rap_edge_msgs.srv import ListConcepts
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

NODE = "/rap_edge"


def node_command(cfg: dict[str, Any], **extra: str) -> list[str]:
    params = {
        "image_topics": f"[{TOPIC_A}]",
        "memory": cfg["memory"],
        "models": cfg["models"],
        "provider": "cpu",
        "backend": "template",
        "describe": "false",
        "stats_period": "0.0",
        **extra,
    }
    args = [sys.executable, "-m", "rap_edge_ros.node", "--lifecycle", "--ros-args"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    return args


class Probe:
    def __init__(self) -> None:
        self.node = Node("rap_edge_lifecycle_probe")
        self.lock = threading.Lock()
        self.results: list[Any] = []
        self.count = 0
        self.pub = self.node.create_publisher(Image, TOPIC_A, qos_profile_sensor_data)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.sub = self.node.create_subscription(
            RecognitionArray, f"{NODE}/recognitions", self._keep, qos
        )
        self.get = self.node.create_client(GetState, f"{NODE}/get_state")
        self.change = self.node.create_client(ChangeState, f"{NODE}/change_state")
        self.list = self.node.create_client(ListConcepts, f"{NODE}/list_concepts")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _keep(self, msg: Any) -> None:
        with self.lock:
            self.results.append(msg)

    def close(self) -> None:
        self.executor.shutdown()
        rclpy.try_shutdown()
        self.spinner.join(5)
        self.node.destroy_node()

    def call(self, client: Any, request: Any, timeout: float = STEP_S) -> Any:
        if not client.wait_for_service(timeout_sec=timeout):
            msg = f"service {client.srv_name} not available in {timeout} s"
            raise TimeoutError(msg)
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            msg = f"no response from {client.srv_name} in {timeout} s"
            raise TimeoutError(msg)
        return future.result()

    def state(self) -> str:
        return str(self.call(self.get, GetState.Request()).current_state.label)

    def transition(self, transition_id: int) -> list[Any]:
        req = ChangeState.Request()
        req.transition.id = transition_id
        ok = bool(self.call(self.change, req, timeout=START_S).success)
        return [ok, self.state()]

    def recognise_barack(self, frame: Any, tag: str) -> bool:
        """Publish Barack frames until one of them comes back with Barack known."""
        stamps: set[tuple[int, int]] = set()
        end = time.monotonic() + STEP_S
        while time.monotonic() < end:
            self.count += 1
            msg = image_msg(frame)
            stamp = (2000 + self.count, 7)
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
            msg.header.frame_id = tag
            stamps.add(stamp)
            self.pub.publish(msg)
            time.sleep(0.12)
            with self.lock:
                got = [
                    m
                    for m in self.results
                    if (m.header.stamp.sec, m.header.stamp.nanosec) in stamps
                ]
            if any(names(m) == [["known", "Barack"]] for m in got):
                return True
        return False

    def until(self, condition: Any, timeout: float = STEP_S) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            time.sleep(0.05)
        return False


def stop(proc: subprocess.Popen[bytes], sig: int | None) -> Any:
    if sig is not None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "killed after 20 s"


def run(cfg: dict[str, Any], probe: Probe, out: dict[str, Any]) -> None:
    logs = Path(cfg["lifecycle_logs"])
    frame = canvas(cv2.imread(cfg["photos"]["obama2"]))

    # 1. a configure that fails (no models there)
    bad: dict[str, Any] = {}
    out["bad"] = bad
    with (logs / "bad.log").open("w") as log:
        proc = subprocess.Popen(
            node_command(cfg, models="/nonexistent/rap-edge-models"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            bad["initial"] = probe.state()
            bad["configure"] = probe.transition(Transition.TRANSITION_CONFIGURE)
            bad["alive_after"] = proc.poll() is None
            bad["shutdown"] = probe.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
            bad["exit"] = stop(proc, None)
        finally:
            if proc.poll() is None:
                stop(proc, signal.SIGKILL)
    bad["log"] = (logs / "bad.log").read_text()[-3000:]

    # 2. every transition of a good one
    good: dict[str, Any] = {}
    out["good"] = good
    with (logs / "good.log").open("w") as log:
        proc = subprocess.Popen(node_command(cfg), stdout=log, stderr=subprocess.STDOUT)
        try:
            good["initial"] = probe.state()
            good["no_services_unconfigured"] = (
                probe.node.count_services(f"{NODE}/list_concepts") == 0
            )
            # A transition the state does not have is refused; the node goes on.
            good["activate_unconfigured"] = probe.transition(Transition.TRANSITION_ACTIVATE)
            bringup = subprocess.run(
                [sys.executable, "-m", "rap_edge_ros.bringup", "--timeout", str(START_S)],
                capture_output=True,
                text=True,
                timeout=START_S * 2,
                check=False,
            )
            good["bringup"] = [bringup.returncode, bringup.stdout, bringup.stderr[-1500:]]
            good["state_after_bringup"] = probe.state()
            good["recognised_active"] = probe.recognise_barack(frame, "active")
            good["deactivate"] = probe.transition(Transition.TRANSITION_DEACTIVATE)
            good["unsubscribed_inactive"] = probe.until(
                lambda: probe.pub.get_subscription_count() == 0
            )
            listed = probe.call(probe.list, ListConcepts.Request())
            good["list_inactive"] = [c.name for c in listed.concepts]
            good["cleanup"] = probe.transition(Transition.TRANSITION_CLEANUP)
            good["services_gone"] = probe.until(
                lambda: probe.node.count_services(f"{NODE}/list_concepts") == 0
            )
            good["configure_again"] = probe.transition(Transition.TRANSITION_CONFIGURE)
            good["activate_again"] = probe.transition(Transition.TRANSITION_ACTIVATE)
            good["subscribed_again"] = probe.until(lambda: probe.pub.get_subscription_count() == 1)
            good["recognised_again"] = probe.recognise_barack(frame, "again")
            started = time.monotonic()
            good["shutdown"] = probe.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
            good["exit"] = stop(proc, None)
            good["exit_s"] = round(time.monotonic() - started, 2)
        finally:
            if proc.poll() is None:
                stop(proc, signal.SIGKILL)
    good["log"] = (logs / "good.log").read_text()[-20000:]

    # 3. autostart
    auto: dict[str, Any] = {}
    out["autostart"] = auto
    with (logs / "auto.log").open("w") as log:
        proc = subprocess.Popen(
            node_command(cfg, autostart="true"), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            auto["recognised"] = probe.recognise_barack(frame, "auto") or (
                probe.until(lambda: probe.pub.get_subscription_count() == 1, START_S)
                and probe.recognise_barack(frame, "auto")
            )
            auto["state"] = probe.state()
            started = time.monotonic()
            auto["exit"] = stop(proc, signal.SIGINT)
            auto["exit_s"] = round(time.monotonic() - started, 2)
        finally:
            if proc.poll() is None:
                stop(proc, signal.SIGKILL)
    auto["log"] = (logs / "auto.log").read_text()[-3000:]


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    out: dict[str, Any] = {"interfaces": interfaces()}
    rclpy.init()
    probe = Probe()
    try:
        run(cfg, probe, out)
    except Exception:  # noqa: BLE001 - reported in the JSON
        out["error"] = traceback.format_exc()
    finally:
        probe.close()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
