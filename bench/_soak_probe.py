"""The inside of ``bench/soak.py``'s node part: runs in the ROS venv, inside ``netns_run.sh``.

Starts ``python -m rap_edge_ros.node`` on two image topics, publishes the prepared frames on
both at a fixed rate (one thread per camera), receives ``~/recognitions`` and
``~/descriptions``, edits the memory through the node's services once per row (add a concept
with a real photo, update its info, remove it), and samples the node's process from
``/proc/<pid>``. Prints one JSON line per row (``{"row": ...}``) as it goes and a last one
(``{"summary": ...}``); ``bench/soak.py`` reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rap_edge_msgs.msg import Description, RecognitionArray
from rap_edge_msgs.srv import AddConcept, RemoveConcept, UpdateConcept
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench._soak_common
from bench._soak_common import (
    EDIT_INFO,
    EDIT_NAME,
    EDITS,
    cpu_pct,
    frame_index,
    load1,
    pct,
    sample,
)

TOPICS = ("/soak/cam_a/image", "/soak/cam_b/image")
RESULTS = "/rap_edge/recognitions"
DESCRIPTIONS = "/rap_edge/descriptions"
SERVICE_TIMEOUT_S = 60.0
# The node's periodic stats line, per topic: "<topic>: received N processed N dropped N".
COUNTS = re.compile(r"(/\S+): received (\d+) processed (\d+) dropped (\d+) errors (\d+)")


def _node_counts(log: Path) -> dict[str, tuple[int, ...]]:
    """The node's own counters per topic from its latest stats line (empty before one)."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = [ln for ln in text.splitlines() if "stats:" in ln]
    if not lines:
        return {}
    return {m[0]: tuple(int(x) for x in m[1:]) for m in COUNTS.findall(lines[-1])}


def _emit(kind: str, payload: dict[str, Any]) -> None:
    print(json.dumps({kind: payload}), flush=True)


def _interfaces() -> list[str]:
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def _image(bgr: np.ndarray) -> Image:
    m = Image()
    m.height, m.width = int(bgr.shape[0]), int(bgr.shape[1])
    m.encoding, m.is_bigendian, m.step = "bgr8", 0, int(bgr.shape[1]) * 3
    m.data = np.ascontiguousarray(bgr).tobytes()
    return m


class _Row:
    """What arrives during one row (under ``lock``)."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {t: [] for t in TOPICS}
        self.pipeline: list[float] = []
        self.queue: list[float] = []
        self.decisions: dict[str, int] = {}
        self.published: dict[str, int] = dict.fromkeys(TOPICS, 0)
        self.late: dict[str, int] = dict.fromkeys(TOPICS, 0)
        self.descriptions = 0
        self.desc_backends: dict[str, int] = {}
        self.desc_ms: list[float] = []
        self.desc_fell_back = 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", required=True, help=".npz: src0, src1 [G*6,H,W,3], edit [h,w,3]")
    p.add_argument("--memory", required=True)
    p.add_argument("--models", default="")
    p.add_argument("--log", required=True, help="where the node's output goes")
    p.add_argument("--rate", type=float, default=15.0)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--row-seconds", type=float, default=60.0)
    p.add_argument("--segment-frames", type=int, default=60)
    p.add_argument("--describe-every", type=float, default=10.0)
    p.add_argument("--backend", default="auto")
    p.add_argument("--llm-threads", type=int, default=1)
    p.add_argument("--sample-seconds", type=float, default=5.0)
    args = p.parse_args()

    data = np.load(args.frames)
    frames = [data["src0"], data["src1"]]
    groups = [len(f) // 6 for f in frames]
    edit_image = _image(data["edit"])
    topics = "[" + ",".join(f"'{t}'" for t in TOPICS) + "]"
    node_cmd = [
        sys.executable,
        "-m",
        "rap_edge_ros.node",
        "--ros-args",
        "-p",
        f"image_topics:={topics}",
        "-p",
        f"memory:={args.memory}",
        *(["-p", f"models:={args.models}"] if args.models else []),
        "-p",
        "describe:=true",
        "-p",
        f"describe_every:={float(args.describe_every)}",
        "-p",
        f"backend:={args.backend}",
        "-p",
        f"llm_threads:={int(args.llm_threads)}",
        "-p",
        f"stats_period:={min(10.0, float(args.row_seconds))}",
        # Declared by nodes that cluster strangers; an undeclared override is ignored.
        "-p",
        "cluster_unknown:=true",
    ]
    summary: dict[str, Any] = {"interfaces": _interfaces(), "node_cmd": node_cmd[1:]}
    log = Path(args.log).open("w")  # noqa: SIM115 - closed in finally
    started = time.monotonic()
    node = subprocess.Popen(node_cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    summary["node_pid"] = node.pid
    rclpy.init()
    probe = rclpy.create_node("rap_edge_soak_probe")
    pubs = [probe.create_publisher(Image, t, qos_profile_sensor_data) for t in TOPICS]
    lock = threading.Lock()
    row = _Row()

    def on_result(msg: RecognitionArray) -> None:
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        names = list(msg.timing_names)
        with lock:
            lat = row.latency.get(msg.source_topic)
            if lat is None:
                return
            lat.append((now - stamp) * 1000.0)
            if "total" in names:
                row.pipeline.append(float(msg.timing_ms[names.index("total")]))
            if "queue" in names:
                row.queue.append(float(msg.timing_ms[names.index("queue")]))
            for r in msg.recognitions:
                row.decisions[r.decision] = row.decisions.get(r.decision, 0) + 1

    def on_description(msg: Description) -> None:
        with lock:
            row.descriptions += 1
            row.desc_backends[msg.backend] = row.desc_backends.get(msg.backend, 0) + 1
            row.desc_ms.append(float(msg.total_ms))
            row.desc_fell_back += int(msg.fell_back)

    llm_note: list[str] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            for kv in status.values:
                if kv.key == "llm" and kv.value:
                    with lock:
                        llm_note[:] = [kv.value]

    best_effort = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    probe.create_subscription(RecognitionArray, RESULTS, on_result, best_effort)
    probe.create_subscription(Description, DESCRIPTIONS, on_description, best_effort)
    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, best_effort)
    group = ReentrantCallbackGroup()
    clients = {
        "add": probe.create_client(AddConcept, "/rap_edge/add_concept", callback_group=group),
        "update": probe.create_client(
            UpdateConcept, "/rap_edge/update_concept", callback_group=group
        ),
        "remove": probe.create_client(
            RemoveConcept, "/rap_edge/remove_concept", callback_group=group
        ),
    }
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(probe)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    stop = threading.Event()

    def publish(k: int) -> None:
        msgs = [_image(f) for f in frames[k]]
        period = 1.0 / args.rate
        start = time.perf_counter() + k * period / 2  # the cameras half a period apart
        i = 0
        while not stop.is_set():
            target = start + i * period
            wait = target - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif -wait > period:  # behind by a whole period (a loaded machine): skip ahead
                skipped = int(-wait / period)
                with lock:
                    row.late[TOPICS[k]] += skipped
                i += skipped
            m = msgs[frame_index(i, groups[k], args.segment_frames)]
            now = time.time()
            m.header.stamp.sec, m.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            m.header.frame_id = f"cam{k}"
            pubs[k].publish(m)
            with lock:
                row.published[TOPICS[k]] += 1
            i += 1

    def call(kind: str) -> dict[str, Any]:
        if kind == "add":
            req: Any = AddConcept.Request()
            req.name, req.category, req.info = EDIT_NAME, "person", EDIT_INFO[0]
            req.images = [edit_image]
        elif kind == "update":
            req = UpdateConcept.Request()
            req.id_or_name, req.info = EDIT_NAME, EDIT_INFO[1]
        else:
            req = RemoveConcept.Request()
            req.id_or_name = EDIT_NAME
        t0 = time.perf_counter()
        future = clients[kind].call_async(req)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(SERVICE_TIMEOUT_S):
            return {"ok": False, "ms": None, "message": "no answer in time"}
        res = future.result()
        return {
            "ok": bool(res.success),
            "ms": round((time.perf_counter() - t0) * 1000.0, 1),
            "message": "" if res.success else str(res.message),
        }

    threads: list[threading.Thread] = []
    code = 0
    try:
        deadline = time.monotonic() + 180
        while not (
            all(pub.get_subscription_count() > 0 for pub in pubs)
            and probe.count_publishers(RESULTS) > 0
            and all(c.service_is_ready() for c in clients.values())
        ):
            if time.monotonic() > deadline or node.poll() is not None:
                summary["error"] = "the node did not come up"
                return 1
            time.sleep(0.2)
        summary["node_ready_s"] = round(time.monotonic() - started, 2)
        threads = [threading.Thread(target=publish, args=(k,), daemon=True) for k in (0, 1)]
        t0 = time.monotonic()
        before, t_before = sample(node.pid), t0
        probe_before = os.times()
        counts_before = _node_counts(Path(args.log))
        for th in threads:
            th.start()
        for r in range(args.rows):
            row_start = t0 + r * args.row_seconds
            row_end = row_start + args.row_seconds
            pending = list(EDITS)
            samples: list[dict[str, Any]] = []
            edits: dict[str, dict[str, Any]] = {}
            next_sample = row_start
            while (now := time.monotonic()) < row_end:
                if pending and now >= row_start + pending[0][1] * args.row_seconds:
                    kind = pending.pop(0)[0]
                    edits[kind] = call(kind)
                    continue
                if now >= next_sample:
                    samples.append(sample(node.pid))
                    next_sample += args.sample_seconds
                    continue
                nxt = min(
                    [next_sample, row_end]
                    + ([row_start + pending[0][1] * args.row_seconds] if pending else [])
                )
                time.sleep(max(0.0, min(0.5, nxt - time.monotonic())))
            if node.poll() is not None:
                summary["error"] = f"the node exited with {node.returncode} during row {r}"
                return 1
            end = sample(node.pid)
            wall = time.monotonic() - t_before
            cpu = cpu_pct(end, before, wall)
            probe_now = os.times()
            cpu["probe"] = round(
                100.0
                * (probe_now.user + probe_now.system - probe_before.user - probe_before.system)
                / wall,
                1,
            )
            before, t_before, probe_before = end, time.monotonic(), probe_now
            counts = _node_counts(Path(args.log))
            node_counts = {
                t: dict(
                    zip(
                        ("received", "processed", "dropped", "errors"),
                        (
                            a - b
                            for a, b in zip(v, counts_before.get(t, (0, 0, 0, 0)), strict=False)
                        ),
                        strict=False,
                    )
                )
                for t, v in counts.items()
            }
            counts_before = counts or counts_before
            with lock:
                done, row = row, _Row()
            span = time.monotonic() - row_start
            rss = sorted(s["rss_mb"] for s in samples) or [end["rss_mb"]]
            kids = sorted(s["children_rss_mb"] for s in samples) or [end["children_rss_mb"]]
            everything = [x for t in TOPICS for x in done.latency[t]]
            _emit(
                "row",
                {
                    "row": r,
                    "t_min": round((row_end - t0) / 60.0, 3),
                    "rss_mb": rss[len(rss) // 2],
                    "rss_mb_max": max(rss),
                    "rss_mb_end": end["rss_mb"],
                    "fds": end["fds"],
                    "threads": end["threads"],
                    "children": end["children"],
                    "children_names": end["children_names"],
                    "children_rss_mb": kids[len(kids) // 2],
                    "load1": load1(),
                    "cpu_pct": cpu,
                    "node_counts": node_counts,
                    "latency_ms": {
                        "p50": pct(everything, 50),
                        "p99": pct(everything, 99),
                        "n": len(everything),
                    },
                    "pipeline_ms_p50": pct(done.pipeline, 50),
                    "queue_ms_p50": pct(done.queue, 50),
                    "sources": {
                        t: {
                            "published": done.published[t],
                            "publisher_late": done.late[t],
                            "processed": len(done.latency[t]),
                            "rate_hz": round(len(done.latency[t]) / span, 2),
                            "latency_p50_ms": pct(done.latency[t], 50),
                            "latency_p99_ms": pct(done.latency[t], 99),
                        }
                        for t in TOPICS
                    },
                    "decisions": done.decisions,
                    "descriptions": done.descriptions,
                    "description_backends": done.desc_backends,
                    "description_ms_p50": pct(done.desc_ms, 50),
                    "descriptions_fell_back": done.desc_fell_back,
                    "edits": edits,
                },
            )
    except Exception as err:  # noqa: BLE001 - reported in the summary line the soak reads
        summary["error"] = f"{type(err).__name__}: {err}"
        code = 1
    finally:
        stop.set()
        for th in threads:
            th.join(5)
        try:
            summary["final_sample"] = sample(node.pid)
        except OSError:
            summary["final_sample"] = None
        summary["node_llm"] = llm_note[0] if llm_note else None
        executor.shutdown()
        rclpy.try_shutdown()
        spin.join(5)
        probe.destroy_node()
        node.send_signal(signal.SIGINT)
        try:
            summary["node_exit"] = node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
            summary["node_exit"] = "killed"
        log.close()
        _emit("summary", summary)
    return code


if __name__ == "__main__":
    sys.exit(main())
