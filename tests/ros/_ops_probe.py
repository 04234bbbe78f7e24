"""The node's operational topics over DDS; run ONLY via scripts/netns_run.sh.

``python tests/ros/_ops_probe.py CONFIG.json`` (the ROS venv's Python; the config is
``tests/ros/_node_probe.py``'s: ``memory``, ``models``, ``photos``, ``log``) starts one node on
one camera topic with ``diagnostics_period`` 0.5 s and ``stale_after_s`` 2 s, then:

1. ``/diagnostics``: before any frame the camera's status becomes ERROR ("no frames yet");
   while Barack frames stream it is OK with its rates and counters, and the runtime's status
   is OK naming the provider and the memory's size; once the stream stops the camera is an
   ERROR again ("no frames for ...") after the threshold;
2. ``~/annotated`` and ``~/annotated/compressed`` (``publish_annotated``, JPEG quality 60):
   with nobody subscribed nothing is drawn or published (the runtime's status counts what was
   published); once the probe subscribes to the JPEG topic alone, JPEG frames of the stream
   come back (the raw topic still publishes nothing), encoded at quality 60 (read from the
   JPEG's quantisation table);
3. per-camera settings (``camera_settings``, a YAML file): a node given a bad value does not
   start and names the camera and the field; the running node has an ignore zone covering the
   whole of TOPIC_B's frame, so Barack frames there come back with no recognitions, while the
   same frames on TOPIC_A are recognised;
4. strangers: Joe (not enrolled) streamed on TOPIC_A becomes a cluster listed by
   ``~/list_strangers`` with its crops on disk; ``~/dismiss_stranger`` deletes it (and its
   crops); streamed again, he is a new cluster, which ``~/name_stranger`` enrolls as "Joe",
   and the next frames name him. A request for a cluster that does not exist fails with a
   message naming it.

It prints one JSON line (tests/ros/test_ops.py asserts on it). Every wait is bounded and waits
for what is asserted.
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
import numpy as np
import rclpy
from _node_probe import (
    ANNOTATED_QOS,
    RESULTS_QOS,
    START_S,
    STEP_S,
    TOPIC_A,
    TOPIC_B,
    canvas,
    image_msg,
    interfaces,
    names,
)
from diagnostic_msgs.msg import DiagnosticArray
from rap_edge_msgs.msg import RecognitionArray
from rap_edge_msgs.srv import DismissStranger, ListStrangers, NameStranger
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

NODE = "/rap_edge"
STALE_S = 2.0
PERIOD_S = 0.12
JPEG_QUALITY = 60


def node_command(cfg: dict[str, Any], **extra: str) -> list[str]:
    params = {
        "image_topics": f"[{TOPIC_A}]",
        "memory": cfg["memory"],
        "models": cfg["models"],
        "provider": "cpu",
        "backend": "template",
        "describe": "false",
        "stats_period": "0.0",
        "diagnostics_period": "0.5",
        "stale_after_s": str(STALE_S),
        "publish_annotated": "true",
        "annotated_jpeg_quality": str(JPEG_QUALITY),
        **extra,
    }
    args = [sys.executable, "-m", "rap_edge_ros.node", "--ros-args"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    return args


def level(status: Any) -> int:
    value = status.level
    return value[0] if isinstance(value, (bytes, bytearray)) else int(value)


def status_json(status: Any) -> dict[str, Any]:
    return {
        "level": level(status),
        "name": status.name,
        "message": status.message,
        "hardware_id": status.hardware_id,
        "values": {kv.key: kv.value for kv in status.values},
    }


class Probe:
    def __init__(self) -> None:
        self.node = Node("rap_edge_ops_probe")
        self.lock = threading.Lock()
        self.recognitions: list[tuple[float, Any]] = []
        self.diagnostics: list[tuple[float, Any]] = []
        self.jpegs: list[tuple[float, Any]] = []
        self.count = 0
        self.pub = self.node.create_publisher(Image, TOPIC_A, qos_profile_sensor_data)
        self.pub_b = self.node.create_publisher(Image, TOPIC_B, qos_profile_sensor_data)
        self.subs = [
            self.node.create_subscription(
                RecognitionArray,
                f"{NODE}/recognitions",
                self._keep(self.recognitions),
                RESULTS_QOS,
            ),
            self.node.create_subscription(
                DiagnosticArray, "/diagnostics", self._keep(self.diagnostics), RESULTS_QOS
            ),
        ]
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _keep(self, into: list[tuple[float, Any]]) -> Any:
        def keep(msg: Any) -> None:
            with self.lock:
                into.append((time.monotonic(), msg))

        return keep

    def close(self) -> None:
        self.executor.shutdown()
        rclpy.try_shutdown()
        self.spinner.join(5)
        self.node.destroy_node()

    def until(self, condition: Any, timeout: float = STEP_S) -> Any:
        """Poll ``condition()`` until it returns something truthy (returned) or the deadline."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = condition()
            if got:
                return got
            time.sleep(0.05)
        return None

    def runtime_values(self, since: float) -> dict[str, str] | None:
        """The runtime status's values of the latest array received after ``since``."""
        with self.lock:
            arrays = [m for t, m in self.diagnostics if t >= since]
        for arr in reversed(arrays):
            for s in arr.status:
                if s.name == "rap_edge: runtime":
                    return {kv.key: kv.value for kv in s.values}
        return None

    def camera_status(self, since: float, want: int, prefix: str = "") -> Any:
        """The first camera status at level ``want`` received after ``since``, or None."""
        with self.lock:
            arrays = [m for t, m in self.diagnostics if t >= since]
        for arr in arrays:
            for s in arr.status:
                if (
                    s.name == f"rap_edge: camera {TOPIC_A}"
                    and level(s) == want
                    and s.message.startswith(prefix)
                ):
                    return (arr, s)
        return None


class Stream:
    """Publishes one frame on TOPIC_A every PERIOD_S on its own thread."""

    def __init__(self, probe: Probe, frame: Any, pub: Any = None) -> None:
        self.probe, self.frame = probe, frame
        self.pub = pub or probe.pub
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            msg = image_msg(self.frame)
            with self.probe.lock:
                self.probe.count += 1
                n = self.probe.count
            msg.header.stamp.sec, msg.header.stamp.nanosec = 3000 + n, 11
            self.pub.publish(msg)
            time.sleep(PERIOD_S)

    def close(self) -> float:
        """Stop; returns the time after the last frame was published."""
        self.stop.set()
        self.thread.join(5)
        return time.monotonic()


def stop(proc: subprocess.Popen[bytes]) -> Any:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "killed after 20 s"


def diagnostics_stage(probe: Probe, frame: Any, out: dict[str, Any]) -> None:
    d: dict[str, Any] = {}
    out["diagnostics"] = d
    t0 = time.monotonic()
    # 1. nothing sent yet: an ERROR once the threshold has passed
    got = probe.until(lambda: probe.camera_status(t0, 2, "no frames yet"), START_S)
    d["before_frames"] = status_json(got[1]) if got else None
    # 2. frames flow: OK, with the runtime's status beside it
    stream = Stream(probe, frame)
    try:
        t1 = time.monotonic()

        def flowing() -> Any:
            hit = probe.camera_status(t1, 0)
            values = {kv.key: kv.value for kv in hit[1].values} if hit else {}
            if hit and int(values["processed"]) > 0 and float(values["input_hz"]) > 0:
                return hit
            return None

        got = probe.until(flowing)
        if got:
            d["flowing"] = status_json(got[1])
            d["flowing_all"] = [status_json(s) for s in got[0].status]
        with probe.lock:
            d["recognised"] = any(names(m) == [["known", "Barack"]] for _, m in probe.recognitions)
    finally:
        stopped = stream.close()
    # 3. the stream stops: an ERROR again after stale_after_s
    got = probe.until(lambda: probe.camera_status(stopped, 2, "no frames for"), STEP_S)
    if got:
        d["after_stop"] = status_json(got[1])
        with probe.lock:
            at = next(t for t, m in probe.diagnostics if m is got[0])
        d["error_after_s"] = round(at - stopped, 2)


def jpeg_quality_table_dc(data: bytes) -> int | None:
    """The first (DC) entry of the JPEG's first quantisation table (DQT), or None."""
    at = data.find(b"\xff\xdb")
    if at < 0:
        return None
    pq = data[at + 4] >> 4
    return data[at + 5] if pq == 0 else int.from_bytes(data[at + 5 : at + 7], "big")


def ijg_dc(quality: int) -> int:
    """The DC luminance quantiser libjpeg uses at ``quality`` (base 16, IJG scaling)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return max(1, min(255, (16 * scale + 50) // 100))


def annotated_stage(probe: Probe, frame: Any, out: dict[str, Any]) -> None:
    a: dict[str, Any] = {}
    out["annotated"] = a
    # Frames have been processed with nobody on either annotated topic (the diagnostics
    # stage): nothing was drawn or published.
    a["unsubscribed"] = probe.runtime_values(0.0)
    sub = probe.node.create_subscription(
        CompressedImage, f"{NODE}/annotated/compressed", probe._keep(probe.jpegs), ANNOTATED_QOS
    )
    a["matched"] = bool(probe.until(lambda: sub.get_publisher_count() >= 1))
    stream = Stream(probe, frame)
    try:
        got = probe.until(lambda: list(probe.jpegs))
    finally:
        stream.close()
    if got:
        msg = got[0][1]
        data = bytes(msg.data)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        a["format"] = msg.format
        a["shape"] = None if img is None else list(img.shape)
        a["stamp_nanosec"] = int(msg.header.stamp.nanosec)
        a["dc_quantiser"] = jpeg_quality_table_dc(data)
        a["expected_dc_quantiser"] = ijg_dc(JPEG_QUALITY)
    t = time.monotonic()
    a["subscribed"] = probe.until(
        lambda: (
            (v := probe.runtime_values(t)) and int(v["annotated_compressed_published"]) > 0 and v
        )
    )
    probe.node.destroy_subscription(sub)


def bad_settings_stage(cfg: dict[str, Any], out: dict[str, Any]) -> None:
    bad = Path(cfg["tmp"]) / "bad_cameras.yaml"
    bad.write_text(f"cameras:\n  {TOPIC_A}:\n    max_rate: -1\n")
    proc = subprocess.run(
        node_command(cfg, camera_settings=str(bad)),
        capture_output=True,
        text=True,
        timeout=START_S,
        check=False,
    )
    out["bad_settings"] = [proc.returncode, (proc.stdout + proc.stderr)[-2000:]]


def zone_stage(probe: Probe, frame: Any, out: dict[str, Any]) -> None:
    z: dict[str, Any] = {}
    out["zone"] = z
    t = time.monotonic()

    def from_b() -> list[Any]:
        with probe.lock:
            got = [m for at, m in probe.recognitions if at >= t and m.source_topic == TOPIC_B]
        return got if len(got) >= 3 else []

    stream = Stream(probe, frame, probe.pub_b)
    try:
        got = probe.until(from_b)
    finally:
        stream.close()
    z["arrays"] = len(got or [])
    z["recognitions"] = [names(m) for m in got or []]


def call(probe: Probe, client: Any, request: Any) -> Any:
    """Call a service and wait (bounded) for the response; None if it never came."""
    if not client.wait_for_service(timeout_sec=STEP_S):
        return None
    future = client.call_async(request)
    return probe.until(lambda: future.done() and future.result(), STEP_S)


def strangers_stage(probe: Probe, cfg: dict[str, Any], out: dict[str, Any]) -> None:
    s: dict[str, Any] = {}
    out["strangers"] = s
    joe = canvas(cv2.imread(cfg["photos"]["biden"]))
    unknown = Path(cfg["memory"]) / "unknown"
    lister = probe.node.create_client(ListStrangers, f"{NODE}/list_strangers")
    namer = probe.node.create_client(NameStranger, f"{NODE}/name_stranger")
    dismisser = probe.node.create_client(DismissStranger, f"{NODE}/dismiss_stranger")

    def listed() -> list[Any]:
        resp = call(probe, lister, ListStrangers.Request())
        return [c for c in resp.strangers if c.crops > 0] if resp and resp.success else []

    stream = Stream(probe, joe)
    try:
        first = probe.until(listed)
    finally:
        stream.close()
    if not first:
        return
    c = first[0]
    s["first"] = {"id": c.id, "count": c.count, "crops": c.crops, "cameras": list(c.cameras)}
    s["first_files"] = len(list((unknown / c.id).glob("*.jpg")))
    resp = call(probe, dismisser, DismissStranger.Request(id=c.id))
    s["dismissed"] = [resp.success, resp.message] if resp else None
    s["after_dismiss_exists"] = (unknown / c.id).exists()
    s["after_dismiss_listed"] = [x.id for x in listed()]
    resp = call(probe, dismisser, DismissStranger.Request(id="u_nobody"))
    s["dismiss_missing"] = [resp.success, resp.message] if resp else None

    t = time.monotonic()
    stream = Stream(probe, joe)
    try:
        again = probe.until(listed)
        if not again:
            return
        s["second_id"] = again[0].id
        resp = call(probe, namer, NameStranger.Request(id=again[0].id, name="Joe", info="a"))
        s["named"] = [resp.success, resp.message, resp.concept.name] if resp else None

        def joe_named() -> bool:
            with probe.lock:
                return any(
                    at >= t and ["known", "Joe"] in names(m) for at, m in probe.recognitions
                )

        s["recognised"] = bool(probe.until(joe_named))
    finally:
        stream.close()
    s["after_name_listed"] = [x.id for x in listed()]


def run(cfg: dict[str, Any], probe: Probe, out: dict[str, Any]) -> None:
    frame = canvas(cv2.imread(cfg["photos"]["obama2"]))
    bad_settings_stage(cfg, out)
    cameras = Path(cfg["tmp"]) / "cameras.yaml"
    cameras.write_text(
        f"cameras:\n  {TOPIC_B}:\n    ignore_zones:\n"
        "      - [[0, 0], [640, 0], [640, 480], [0, 480]]\n"
    )
    command = node_command(
        cfg, image_topics=f"[{TOPIC_A},{TOPIC_B}]", camera_settings=str(cameras)
    )
    with Path(cfg["log"]).open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            matched = probe.until(
                lambda: (
                    probe.pub.get_subscription_count() >= 1
                    and probe.pub_b.get_subscription_count() >= 1
                    and all(s.get_publisher_count() >= 1 for s in probe.subs)
                ),
                START_S,
            )
            out["matched"] = bool(matched)
            diagnostics_stage(probe, frame, out)
            annotated_stage(probe, frame, out)
            zone_stage(probe, frame, out)
            strangers_stage(probe, cfg, out)
            out["exit"] = stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


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
