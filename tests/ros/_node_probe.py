"""Drive the rap-edge node end to end over DDS; run ONLY via scripts/netns_run.sh.

``python tests/ros/_node_probe.py CONFIG.json`` (the ROS venv's Python) reads a JSON file with
``memory``, ``models``, ``photos`` (name -> path), ``log``, ``missing_log`` and ``term_log``
(the node's output files), then:

1. reports the network interfaces of its namespace (``/proc/self/net/dev``);
2. starts the node once without ``memory``: it must exit non-zero with a clear message;
3. starts the node (``python -m rap_edge_ros.node --ros-args -p ...``) on two image topics
   and one compressed topic, with the template backend and ~/annotated on, and waits for its
   services;
4. publishes real photos (bgr8, rgb8, mono8 and JPEG) and checks the recognitions (header
   copied, Barack known, Biden unknown); then streams Barack frames until both a description
   and an annotated image have come back (~/annotated is best effort and ~0.9 MB a frame: on
   a busy machine a frame can be lost on the way, so one is waited for, not assumed);
5. calls the services while a Biden stream runs: add "Joe" (named on later frames), update,
   list, remove (never named again), ask with and without an image; bad requests answer
   success=False;
6. changes parameters at run time (face_threshold 0.99 makes Barack unknown; invalid values
   are rejected with the reason);
7. publishes corrupt frames (unknown encoding, truncated, zero size, garbage and empty JPEG)
   until the node has logged each kind (its subscriptions are best effort, depth 1, so a frame
   can be dropped), then a good frame that must still be recognised, then waits for a stats
   line that counts them;
8. sends SIGINT and times the exit; then starts the node again and stops it with SIGTERM.

It prints one JSON line; the pytest side (tests/ros/test_node.py) asserts on it and on the
node's log. Every wait is bounded and waits for the very thing the test asserts (no fixed
sleeps); the node is killed if it outlives the probe.
"""

from __future__ import annotations

import array
import json
import os
import re
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
from rap_edge_msgs.msg import Description, RecognitionArray
from rap_edge_msgs.srv import AddConcept, Ask, ListConcepts, RemoveConcept, UpdateConcept
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CompressedImage, Image

TOPIC_A = "/cam_a/image_raw"  # Obama frames (several encodings), corrupt frames
TOPIC_B = "/cam_b/image_raw"  # Biden frames (the live add/remove)
TOPIC_C = "/cam_c/image_raw/compressed"  # JPEG frames
NODE = "/rap_edge"
STEP_S = 45.0  # bound of each wait (a few seconds here; generous for a busy 2-core machine)
START_S = 60.0  # the node loading its models on a busy machine
PERIOD_S = 0.12  # between published frames
# The node publishes ~/annotated with sensor-data QoS (best effort, keep last 5, volatile); a
# reliable reader would not match that writer at all, so the reader is best effort too, with a
# history deep enough that nothing that arrives is overwritten before the probe reads it. Lost
# frames (a 640x480 bgr8 frame is ~15 UDP fragments) are made up for by streaming until one
# arrives.
ANNOTATED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
# Recognitions and descriptions: reliable, volatile (the node's ~/recognitions and
# ~/descriptions are reliable, keep last 10), keep last 50.
RESULTS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# What the node logs (once each) for the corrupt frames the probe sends.
CORRUPT_LOGGED = (
    "unsupported image encoding 'weird42'",
    "height * step",
    "zero or negative size",
    "cannot decode",
    "empty compressed image",
)
STATS_RE = re.compile(
    r"(/\S+): received \d+ processed \d+ dropped \d+ errors \d+ unconvertible (\d+)"
)


def interfaces() -> list[str]:
    with open("/proc/self/net/dev") as f:
        return sorted(line.split(":")[0].strip() for line in list(f)[2:] if ":" in line)


def canvas(*images: np.ndarray) -> np.ndarray:
    """A 640x480 grey canvas with each photo scaled into its own column."""
    out = np.full((480, 640, 3), 90, np.uint8)
    col = 640 // len(images)
    for i, img in enumerate(images):
        s = min((col - 20) / img.shape[1], 440 / img.shape[0])
        small = cv2.resize(
            img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA
        )
        x = i * col + 10
        out[20 : 20 + small.shape[0], x : x + small.shape[1]] = small
    return out


def image_msg(bgr: np.ndarray, encoding: str = "bgr8") -> Image:
    if encoding == "bgr8":
        a = bgr
    elif encoding == "rgb8":
        a = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    elif encoding == "mono8":
        a = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    else:
        raise ValueError(encoding)
    a = np.ascontiguousarray(a)
    channels = 1 if a.ndim == 2 else a.shape[2]
    msg = Image(
        encoding=encoding,
        height=a.shape[0],
        width=a.shape[1],
        step=a.shape[1] * channels,
        is_bigendian=0,
    )
    msg.data = array.array("B", a.tobytes())
    return msg


def jpeg_msg(bgr: np.ndarray) -> CompressedImage:
    ok, buf = cv2.imencode(".jpg", bgr)
    assert ok
    msg = CompressedImage(format="jpeg")
    msg.data = array.array("B", buf.tobytes())
    return msg


def names(msg: Any) -> list[list[str]]:
    return sorted([r.decision, r.name] for r in msg.recognitions)


class Probe:
    """The probe's ROS side: publishers, subscribers, clients, and what came back."""

    def __init__(self) -> None:
        self.node = Node("rap_edge_probe")
        self.lock = threading.Lock()
        self.recognitions: list[Any] = []
        self.descriptions: list[Any] = []
        self.annotated: list[Any] = []
        self.count = 0
        self.pubs = {
            TOPIC_A: self.node.create_publisher(Image, TOPIC_A, qos_profile_sensor_data),
            TOPIC_B: self.node.create_publisher(Image, TOPIC_B, qos_profile_sensor_data),
            TOPIC_C: self.node.create_publisher(CompressedImage, TOPIC_C, qos_profile_sensor_data),
        }
        self.subs = [
            self.node.create_subscription(
                RecognitionArray,
                f"{NODE}/recognitions",
                self._keep(self.recognitions),
                RESULTS_QOS,
            ),
            self.node.create_subscription(
                Description, f"{NODE}/descriptions", self._keep(self.descriptions), RESULTS_QOS
            ),
            self.node.create_subscription(
                Image, f"{NODE}/annotated", self._keep(self.annotated), ANNOTATED_QOS
            ),
        ]
        self.clients = {
            "add": self.node.create_client(AddConcept, f"{NODE}/add_concept"),
            "update": self.node.create_client(UpdateConcept, f"{NODE}/update_concept"),
            "remove": self.node.create_client(RemoveConcept, f"{NODE}/remove_concept"),
            "list": self.node.create_client(ListConcepts, f"{NODE}/list_concepts"),
            "ask": self.node.create_client(Ask, f"{NODE}/ask"),
            "params": self.node.create_client(SetParameters, f"{NODE}/set_parameters"),
        }
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _keep(self, into: list[Any]) -> Any:
        def keep(msg: Any) -> None:
            with self.lock:
                into.append(msg)

        return keep

    def close(self) -> None:
        self.executor.shutdown()
        rclpy.try_shutdown()
        self.spinner.join(5)
        self.node.destroy_node()

    # -- frames ----------------------------------------------------------------------------

    def publish(self, topic: str, msg: Any, frame_id: str) -> tuple[int, int]:
        """Publish with a new, unique stamp; returns it."""
        with self.lock:
            self.count += 1
            n = self.count
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + n, 1000 * n
        msg.header.frame_id = frame_id
        self.pubs[topic].publish(msg)
        return (1000 + n, 1000 * n)

    def wait_matched(self, timeout: float = STEP_S) -> dict[str, int]:
        """Until the node reads every image topic and every result topic has a writer."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and (
            any(p.get_subscription_count() < 1 for p in self.pubs.values())
            or any(s.get_publisher_count() < 1 for s in self.subs)
        ):
            time.sleep(0.05)
        return {
            **{t: p.get_subscription_count() for t, p in self.pubs.items()},
            **{s.topic_name: s.get_publisher_count() for s in self.subs},
        }

    def results_for(self, stamps: set[tuple[int, int]]) -> list[Any]:
        with self.lock:
            return [
                m
                for m in self.recognitions
                if (m.header.stamp.sec, m.header.stamp.nanosec) in stamps
            ]

    def stream_until(
        self, topic: str, make: Any, frame_id: str, done: Any, timeout: float = STEP_S
    ) -> tuple[list[Any], set[tuple[int, int]]]:
        """Publish ``make()`` every PERIOD_S until ``done(results of these frames)``."""
        stamps: set[tuple[int, int]] = set()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            stamps.add(self.publish(topic, make(), frame_id))
            time.sleep(PERIOD_S)
            got = self.results_for(stamps)
            if done(got):
                return got, stamps
        return self.results_for(stamps), stamps

    # -- services --------------------------------------------------------------------------

    def call(self, which: str, request: Any, timeout: float = STEP_S) -> Any:
        client = self.clients[which]
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

    def set_param(self, name: str, value: Any) -> tuple[bool, str]:
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        (res,) = self.call("params", req).results
        return bool(res.successful), str(res.reason)


class BackgroundStream:
    """Publishes one frame on a topic every PERIOD_S on its own thread."""

    def __init__(self, probe: Probe, topic: str, make: Any, frame_id: str) -> None:
        self.probe, self.topic, self.make, self.frame_id = probe, topic, make, frame_id
        self.stamps: list[tuple[int, int]] = []
        self.lock = threading.Lock()  # a frame is published and listed under it
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            msg = self.make()
            with self.lock:
                self.stamps.append(self.probe.publish(self.topic, msg, self.frame_id))
            time.sleep(PERIOD_S)

    def mark(self) -> int:
        """Frames listed from the returned index on were published after this call."""
        with self.lock:
            return len(self.stamps)

    def after(self, mark: int) -> list[Any]:
        with self.lock:
            stamps = set(self.stamps[mark:])
        return self.probe.results_for(stamps)

    def wait_after(self, mark: int, n: int, timeout: float = STEP_S) -> list[Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.after(mark)) < n:
            time.sleep(0.05)
        return self.after(mark)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def node_command(cfg: dict[str, Any], *, memory: bool = True) -> list[str]:
    params = {
        "image_topics": f"[{TOPIC_A},{TOPIC_B}]",
        "compressed_topics": f"[{TOPIC_C}]",
        "models": cfg["models"],
        "provider": "cpu",
        "backend": "template",
        "publish_annotated": "true",
        "stats_period": "2.0",
    }
    if memory:
        params["memory"] = cfg["memory"]
    args = [sys.executable, "-m", "rap_edge_ros.node", "--ros-args"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    return args


def missing_memory(cfg: dict[str, Any]) -> dict[str, Any]:
    """The node without ``memory``: a clear error and a non-zero exit, quickly."""
    with open(cfg["missing_log"], "w") as log:
        proc = subprocess.Popen(
            node_command(cfg, memory=False), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            code = proc.wait(timeout=START_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = "timeout"
    return {"exit": code, "log": Path(cfg["missing_log"]).read_text()[-2000:]}


def sigterm(cfg: dict[str, Any]) -> dict[str, Any]:
    """A second node, stopped with SIGTERM once its services answer."""
    context = Context()  # the default one was shut down with the first probe node
    rclpy.init(context=context)
    node = Node("rap_edge_probe_term", context=context)
    client = node.create_client(ListConcepts, f"{NODE}/list_concepts")
    result: dict[str, Any] = {}
    with open(cfg["term_log"], "w") as log:
        proc = subprocess.Popen(node_command(cfg), stdout=log, stderr=subprocess.STDOUT)
        try:
            result["services_up"] = client.wait_for_service(timeout_sec=START_S)
        finally:
            node.destroy_client(client)
            node.destroy_node()
            rclpy.try_shutdown(context=context)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                result["exit"] = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                result["exit"] = "killed after 20 s"
            result["exit_s"] = round(time.monotonic() - started, 2)
    result["log"] = Path(cfg["term_log"]).read_text()[-3000:]
    return result


def run(cfg: dict[str, Any], out: dict[str, Any]) -> None:
    photos = {k: cv2.imread(v) for k, v in cfg["photos"].items()}
    obama2, obama3, biden = (canvas(photos[k]) for k in ("obama2", "obama3", "biden"))
    probe = Probe()
    try:
        t0 = time.monotonic()
        if not probe.clients["list"].wait_for_service(timeout_sec=START_S):
            out["error"] = "the node's services did not appear"
            return
        out["services_after_s"] = round(time.monotonic() - t0, 2)
        out["matched"] = probe.wait_matched()

        # -- recognitions per encoding ---------------------------------------------------
        def barack(got: list[Any]) -> bool:
            return any(names(m) == [["known", "Barack"]] for m in got)

        seen: dict[str, Any] = {}
        for key, topic, make in (
            ("bgr8", TOPIC_A, lambda: image_msg(obama2, "bgr8")),
            ("rgb8", TOPIC_A, lambda: image_msg(obama3, "rgb8")),
            ("mono8", TOPIC_A, lambda: image_msg(obama2, "mono8")),
            ("jpeg", TOPIC_C, lambda: jpeg_msg(obama2)),
        ):
            got, stamps = probe.stream_until(topic, make, f"frame_{key}", barack)
            seen[key] = {
                "names": [names(m) for m in got],
                "headers_ok": bool(got)
                and all(
                    (m.header.stamp.sec, m.header.stamp.nanosec) in stamps
                    and m.header.frame_id == f"frame_{key}"
                    for m in got
                ),
                "source_topics": sorted({m.source_topic for m in got}),
                "timings": sorted(got[-1].timing_names) if got else [],
                "total_ms": [
                    round(float(t), 1)
                    for n, t in zip(got[-1].timing_names, got[-1].timing_ms, strict=True)
                    if n == "total"
                ]
                if got
                else [],
            }
        out["frames"] = seen

        # -- a description (template) and the annotated image --------------------------
        # Both are asserted on, so both are waited for: Barack frames are streamed until a
        # description has come whose frame's recognitions came too, and an annotated frame.
        def stamp(m: Any) -> tuple[int, int]:
            return (m.header.stamp.sec, m.header.stamp.nanosec)

        def described_and_annotated(_: list[Any]) -> bool:
            with probe.lock:
                if not probe.descriptions or not probe.annotated:
                    return False
                first = stamp(probe.descriptions[0])
                return any(stamp(m) == first for m in probe.recognitions)

        t0 = time.monotonic()
        if not described_and_annotated([]):
            probe.stream_until(
                TOPIC_A,
                lambda: image_msg(obama2, "bgr8"),
                "frame_annotated",
                described_and_annotated,
                timeout=2 * STEP_S,
            )
        out["described_and_annotated_after_s"] = round(time.monotonic() - t0, 2)
        with probe.lock:
            descs = list(probe.descriptions)
            annotated = list(probe.annotated)
            published_a = {stamp(m) for m in probe.recognitions}
        out["descriptions"] = [
            {
                "text": d.text,
                "backend": d.backend,
                "frame_id": d.header.frame_id,
                "stamp_of_a_result": (d.header.stamp.sec, d.header.stamp.nanosec) in published_a,
                "names": names(d),
                "fell_back": d.fell_back,
                "total_ms": float(d.total_ms),
            }
            for d in descs
        ]
        out["annotated"] = [
            {
                "encoding": a.encoding,
                "size": [a.width, a.height],
                "frame_id": a.header.frame_id,
                "bytes": len(a.data),
            }
            for a in annotated[:3]
        ]

        # -- Biden unknown, then Joe added and removed while the stream runs -----------
        stream = BackgroundStream(probe, TOPIC_B, lambda: image_msg(biden, "bgr8"), "cam_b")
        try:
            got = stream.wait_after(0, 3)
            out["biden_before"] = [names(m) for m in got]
            raw_biden = image_msg(photos["biden"], "rgb8")
            res = probe.call(
                "add",
                AddConcept.Request(
                    name="Joe",
                    category="person",
                    info="Joe drinks tea.",
                    aliases=["<joe>"],
                    images=[raw_biden],
                ),
            )
            mark = stream.mark()
            out["add"] = {
                "success": res.success,
                "message": res.message,
                "concept": [
                    res.concept.name,
                    res.concept.category,
                    list(res.concept.aliases),
                    res.concept.image_count,
                ],
            }
            out["joe_id"] = res.concept.id
            out["biden_after_add"] = [names(m) for m in stream.wait_after(mark, 3)]
            res = probe.call("list", ListConcepts.Request())
            out["list_after_add"] = [c.name for c in res.concepts]
            out["list_dogs"] = [
                c.name for c in probe.call("list", ListConcepts.Request(category="dog")).concepts
            ]
            # Without the request field a photo with no dog is refused, naming the field
            # (objects are off, but the node crops object photos when the models exist).
            grey = [image_msg(np.full((120, 160, 3), 90, np.uint8))]  # no dog in it
            out["add_no_dog"] = None
            if cfg.get("object_models"):
                no_dog = AddConcept.Request(name="Rex", category="dog", images=grey)
                res = probe.call("add", no_dog)
                out["add_no_dog"] = [res.success, res.message]
            # A pet's photo kept whole (the request field): accepted, listed, then removed.
            res = probe.call(
                "add",
                AddConcept.Request(name="Rex", category="dog", images=grey, whole_image=True),
            )
            out["add_whole"] = [res.success, res.message, res.concept.image_count]
            out["list_dogs_whole"] = [
                c.name for c in probe.call("list", ListConcepts.Request(category="dog")).concepts
            ]
            probe.call("remove", RemoveConcept.Request(id_or_name="Rex"))
            res = probe.call(
                "update", UpdateConcept.Request(id_or_name="Joe", info="Joe likes trains.")
            )
            out["update"] = {
                "success": res.success,
                "info": res.concept.info,
                "message": res.message,
            }
            bad = {}
            for key, req in (
                (
                    "add_duplicate",
                    AddConcept.Request(name="Barack", category="person", images=[raw_biden]),
                ),
                (
                    "add_no_face",
                    AddConcept.Request(
                        name="Nobody",
                        category="person",
                        images=[image_msg(np.full((120, 160, 3), 90, np.uint8))],
                    ),
                ),
                (
                    "add_bad_image",
                    AddConcept.Request(
                        name="Broken",
                        category="person",
                        images=[Image(encoding="weird42", height=2, width=2, step=2)],
                    ),
                ),
            ):
                res = probe.call("add", req)
                bad[key] = [res.success, res.message]
            for key, req in (
                ("update_missing", UpdateConcept.Request(id_or_name="Nobody", info="x")),
            ):
                res = probe.call("update", req)
                bad[key] = [res.success, res.message]
            res = probe.call("remove", RemoveConcept.Request(id_or_name="Joe"))
            mark = stream.mark()
            out["remove"] = {"success": res.success, "message": res.message}
            out["biden_after_remove"] = [
                [names(m), sorted(c.name for r in m.recognitions for c in r.candidates)]
                for m in stream.wait_after(mark, 4)
            ]
            res = probe.call("remove", RemoveConcept.Request(id_or_name="Joe"))
            bad["remove_again"] = [res.success, res.message]
            out["bad_requests"] = bad
            out["list_after_remove"] = [
                c.name for c in probe.call("list", ListConcepts.Request()).concepts
            ]
        finally:
            stream.close()

        # -- ask ---------------------------------------------------------------------------
        res = probe.call(
            "ask",
            Ask.Request(
                question="Who is here?",
                has_image=True,
                image=image_msg(canvas(photos["obama2"], photos["biden"]), "rgb8"),
            ),
        )
        out["ask_image"] = {
            "success": res.success,
            "answer": res.answer,
            "backend": res.backend,
            "names": names(res),
            "message": res.message,
        }
        res = probe.call("ask", Ask.Request(question="Who is here?"))
        out["ask_latest"] = {"success": res.success, "answer": res.answer, "message": res.message}
        res = probe.call(
            "ask",
            Ask.Request(
                question="Who?",
                has_image=True,
                image=Image(encoding="weird42", height=2, width=2, step=2),
            ),
        )
        out["ask_bad_image"] = {"success": res.success, "message": res.message}
        res = probe.call("ask", Ask.Request(question="  "))
        out["ask_empty"] = {"success": res.success, "message": res.message}

        # -- parameters at run time ------------------------------------------------------
        params: dict[str, Any] = {}
        params["strict"] = probe.set_param("face_threshold", 0.99)
        got, _ = probe.stream_until(
            TOPIC_A, lambda: image_msg(obama2), "strict", lambda g: len(g) >= 2
        )
        params["strict_names"] = [names(m) for m in got]
        params["too_high"] = probe.set_param("face_threshold", 1.5)
        params["top_k_zero"] = probe.set_param("top_k", 0)
        params["read_only"] = probe.set_param("memory", "/elsewhere")
        params["calibrated"] = probe.set_param("face_threshold", -1.0)
        got, _ = probe.stream_until(TOPIC_A, lambda: image_msg(obama2), "calibrated", barack)
        params["calibrated_names"] = [names(m) for m in got]
        params["describe_every"] = probe.set_param("describe_every", 5.0)
        out["params"] = params

        # -- corrupt frames, then a good one ---------------------------------------------
        truncated = image_msg(obama2)
        truncated.data = truncated.data[: len(truncated.data) // 2]
        corrupt: list[tuple[str, Any]] = [
            (
                TOPIC_A,
                Image(
                    encoding="weird42",
                    height=4,
                    width=4,
                    step=12,
                    data=array.array("B", bytes(48)),
                ),
            ),
            (TOPIC_A, truncated),
            (TOPIC_A, Image(encoding="bgr8", height=0, width=0, step=0)),
            (
                TOPIC_C,
                CompressedImage(format="jpeg", data=array.array("B", b"\xff\xd8garbage" * 20)),
            ),
            (TOPIC_C, CompressedImage(format="jpeg")),
        ]

        # The node reads with depth 1, best effort: under load a corrupt frame can be dropped
        # before it is looked at, so the set is sent again until each kind has been logged.
        def node_log() -> str:
            return Path(cfg["log"]).read_text(errors="replace")

        sent = 0
        end = time.monotonic() + STEP_S
        while True:
            for _ in range(4):
                for topic, msg in corrupt:
                    probe.publish(topic, msg, "corrupt")
                    sent += 1
                    time.sleep(0.02)
            wait_end = min(end, time.monotonic() + 2.0)
            while time.monotonic() < wait_end and not all(k in node_log() for k in CORRUPT_LOGGED):
                time.sleep(0.05)
            if time.monotonic() >= end or all(k in node_log() for k in CORRUPT_LOGGED):
                break
        out["corrupt_sent"] = sent
        out["corrupt_logged"] = [k for k in CORRUPT_LOGGED if k in node_log()]
        got, _ = probe.stream_until(TOPIC_A, lambda: image_msg(obama2), "after_corrupt", barack)
        out["after_corrupt"] = [names(m) for m in got]
        got, _ = probe.stream_until(TOPIC_C, lambda: jpeg_msg(obama2), "after_corrupt_c", barack)
        out["after_corrupt_jpeg"] = [names(m) for m in got]

        # A stats line (every stats_period = 2 s) that counts the unconvertible frames.
        def counted() -> bool:
            lines = [line for line in node_log().splitlines() if "stats:" in line]
            if not lines:
                return False
            counts = {m[0]: int(m[1]) for m in STATS_RE.findall(lines[-1])}
            return counts.get(TOPIC_A, 0) >= 1 and counts.get(TOPIC_C, 0) >= 1

        end = time.monotonic() + STEP_S
        while time.monotonic() < end and not counted():
            time.sleep(0.1)
        out["stats_counted"] = counted()
    finally:
        probe.close()


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    out: dict[str, Any] = {"interfaces": interfaces()}
    os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    out["missing_memory"] = missing_memory(cfg)
    rclpy.init()
    with open(cfg["log"], "w") as log:
        node = subprocess.Popen(node_command(cfg), stdout=log, stderr=subprocess.STDOUT)
        try:
            run(cfg, out)
        except Exception:  # noqa: BLE001 - reported in the JSON
            out["error"] = traceback.format_exc()
        finally:
            rclpy.try_shutdown()
            out["node_alive_before_sigint"] = node.poll() is None
            started = time.monotonic()
            node.send_signal(signal.SIGINT)
            try:
                out["node_exit"] = node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
                out["node_exit"] = "killed after 20 s"
            out["exit_s"] = round(time.monotonic() - started, 2)
    try:
        out["sigterm"] = sigterm(cfg)
    except Exception:  # noqa: BLE001 - reported in the JSON
        out["error"] = traceback.format_exc()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
