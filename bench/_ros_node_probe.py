"""The inside of ``bench/ros_node.py``: runs in the ROS venv, inside ``scripts/netns_run.sh``.

Starts the node, publishes the prepared frames as sensor_msgs/Image at a fixed rate, receives
its RecognitionArray messages, and prints one JSON line: per received frame the send time, the
receive time, the pipeline's own time (the ``total`` of the message's timings) and how long the
frame waited for the node's processing thread (``queue``).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rap_edge_msgs.msg import RecognitionArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

TOPIC = "/bench/image"


def _interfaces() -> list[str]:
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", required=True, help=".npz with an array 'frames' [N,H,W,3] BGR")
    p.add_argument("--memory", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument(
        "--echo",
        action="store_true",
        help="run bench/_ros_echo.py (transport only) instead of the node",
    )
    args = p.parse_args()
    frames = np.load(args.frames)["frames"]
    node_cmd = [
        sys.executable,
        "-m",
        "rap_edge_ros.node",
        "--ros-args",
        "-p",
        f"image_topics:=['{TOPIC}']",
        "-p",
        f"memory:={args.memory}",
        "-p",
        f"models:={args.models}",
        "-p",
        "describe:=false",
        "-p",
        "provider:=cpu",
        "-p",
        "backend:=template",
        "-p",
        "stats_period:=1.0",
    ]
    if args.echo:
        node_cmd = [sys.executable, str(Path(__file__).parent / "_ros_echo.py"), TOPIC]
    log = Path(args.frames).with_suffix(".node.log").open("w")
    node_proc = subprocess.Popen(node_cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    rclpy.init()
    probe = rclpy.create_node("rap_edge_bench_probe")
    pub = probe.create_publisher(Image, TOPIC, qos_profile_sensor_data)
    sent: dict[str, float] = {}
    got: list[tuple[float, float, float, float]] = []  # (send, receive, total ms, queue ms)
    lock = threading.Lock()

    def on_result(msg: RecognitionArray) -> None:
        now = time.time()
        with lock:
            t0 = sent.get(msg.header.frame_id)
        if t0 is None:
            return
        names = list(msg.timing_names)
        total = float(msg.timing_ms[names.index("total")]) if "total" in names else float("nan")
        queue = float(msg.timing_ms[names.index("queue")]) if "queue" in names else float("nan")
        with lock:
            got.append((t0, now, total, queue))

    probe.create_subscription(
        RecognitionArray,
        "/rap_edge/recognitions",
        on_result,
        QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT),
    )
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(probe)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    msgs = []
    for f in frames:
        m = Image()
        m.height, m.width = int(f.shape[0]), int(f.shape[1])
        m.encoding, m.is_bigendian, m.step = "bgr8", 0, int(f.shape[1]) * 3
        m.data = f.tobytes()
        msgs.append(m)
    summary: dict[str, object] = {"interfaces": _interfaces()}
    try:
        deadline = time.time() + 60
        while (
            pub.get_subscription_count() == 0
            or probe.count_publishers("/rap_edge/recognitions") == 0
        ):
            if time.time() > deadline or node_proc.poll() is not None:
                summary["error"] = "the node did not come up"
                return 1
            time.sleep(0.1)
        period = 1.0 / args.rate
        n_warm = int(args.warmup * args.rate)
        n_total = n_warm + int(args.seconds * args.rate)
        start = time.perf_counter()
        for i in range(n_total):
            target = start + i * period
            wait = target - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            m = msgs[i % len(msgs)]
            now = time.time()
            m.header.stamp.sec, m.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            m.header.frame_id = f"{'w' if i < n_warm else 'f'}{i}"
            with lock:
                sent[m.header.frame_id] = now
            pub.publish(m)
        time.sleep(2.0)  # the last frames' results
        with lock:
            timed = list(got)
            warm_ids = {k for k in sent if k.startswith("w")}
            timed_sent = [v for k, v in sent.items() if k not in warm_ids]
        t_first = min(timed_sent)
        rows = [(a - t_first, (b - a) * 1000, c, q) for (a, b, c, q) in timed if a >= t_first]
        summary.update(
            {
                "published": len(timed_sent),
                "received": len(rows),
                "rows": rows,
                "rate": args.rate,
                "seconds": args.seconds,
                "send_span_s": time.perf_counter() - start,
            }
        )
    finally:
        executor.shutdown()
        rclpy.try_shutdown()
        spin.join(5)
        probe.destroy_node()
        node_proc.send_signal(signal.SIGINT)
        try:
            summary["node_exit"] = node_proc.wait(15)
        except subprocess.TimeoutExpired:
            node_proc.kill()
            summary["node_exit"] = "killed"
        log.close()
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
