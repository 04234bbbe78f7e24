#!/usr/bin/env python3
"""ROS 2 node overhead: latency the node adds on top of the pipeline, drops, and drift.

A probe node publishes 640x480 frames (the real check photos with 1 to 3 faces, as in
``bench/pipeline.py``) as sensor_msgs/Image at 30 Hz for 60 s to the rap-edge node, and
receives its RecognitionArray messages. Per received frame: latency = receive time - the
frame's header stamp (set at publish; one machine, one clock), and overhead = latency - the
pipeline's own time for that frame (the ``total`` in the message's timings). The overhead holds
message transport both ways, image conversion, and the wait of a frame for the processing
thread (a frame that arrives while the previous one is processed waits; one that is still
waiting when the next arrives is dropped); the node reports that wait (``queue``), so the two
parts are shown apart. Drift: the overhead's median in each 10-s window and
a least-squares slope over the run.

Everything that starts DDS runs inside ``scripts/netns_run.sh`` (a private network namespace
with only ``lo``, loopback Fast DDS profile); the workspace must be built
(``scripts/ros_build.sh``) and the models exported (``make models``).

Example:
    python bench/ros_node.py --rate 30 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rap_edge.app import Session, Settings
from rap_edge.memory import Memory
from rap_edge.models import default_store_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.pipeline
from bench.pipeline import check_photos, stream

ROOT = Path(__file__).resolve().parents[1]


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second (30)")
    parser.add_argument("--seconds", type=float, default=60.0, help="timed seconds (60)")
    parser.add_argument("--models", default=None, help="exported models (default <store>/onnx)")
    parser.add_argument(
        "--echo",
        action="store_true",
        help="measure bench/_ros_echo.py (no recognition: the transport floor)",
    )
    parser.add_argument(
        "--out", default=None, help="default bench/results/ros_node.json (ros_node_echo.json)"
    )
    args = parser.parse_args()
    if not (ROOT / "ros2_ws" / "install" / "setup.bash").is_file():
        msg = "ros2_ws is not built: run scripts/ros_build.sh first"
        raise SystemExit(msg)
    paths, photos = check_photos()
    models_dir = Path(args.models) if args.models else default_store_dir() / "onnx"
    with tempfile.TemporaryDirectory(prefix="rap-bench-ros-") as tmp:
        with (
            Memory.init(Path(tmp) / "mem") as mem,
            Session.open(Settings(models=models_dir, provider="cpu"), memory=mem) as session,
        ):
            session.add_concept("Barack", "person", files=[paths["obama"]])
        frames = np.stack(stream(photos, 90))
        npz = Path(tmp) / "frames.npz"
        np.savez(npz, frames=frames)
        cmd = [
            str(ROOT / "scripts" / "netns_run.sh"),
            "python",
            str(ROOT / "bench" / "_ros_node_probe.py"),
            "--frames",
            str(npz),
            "--memory",
            str(Path(tmp) / "mem"),
            "--models",
            str(models_dir),
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.seconds),
            *(["--echo"] if args.echo else []),
        ]
        print(
            f"running {args.seconds:.0f} s at {args.rate:.0f} Hz inside a private network "
            "namespace ...",
            flush=True,
        )
        proc = subprocess.run(  # noqa: S603
            cmd,
            capture_output=True,
            text=True,
            check=False,
            timeout=args.seconds + 180,
            cwd=ROOT,
        )
        node_log = (
            npz.with_suffix(".node.log").read_text()
            if npz.with_suffix(".node.log").is_file()
            else ""
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:] + node_log[-3000:])
        raise SystemExit(f"the probe failed (exit {proc.returncode})")
    s = json.loads(lines[-1])
    # The node's own counters (its last stats line, warm-up frames included): frames it never
    # got were lost in transport; frames it got but replaced before processing were stale.
    counts = re.findall(r"received (\d+) processed (\d+) dropped (\d+)", node_log)
    node_counts = (
        dict(zip(("received", "processed", "dropped_stale"), map(int, counts[-1]), strict=True))
        if counts
        else {}
    )
    rows = s["rows"]
    lat = [r[1] for r in rows]
    pipe = [r[2] for r in rows]
    over = [r[1] - r[2] for r in rows]
    queue = [r[3] for r in rows]
    transport = [r[1] - r[2] - r[3] for r in rows]
    windows = []
    for lo in range(0, int(args.seconds), 10):
        w = [r[1] - r[2] for r in rows if lo <= r[0] < lo + 10]
        windows.append({"from_s": lo, "frames": len(w), "overhead_p50_ms": _pct(w, 50)})
    slope = (
        (float(np.polyfit([r[0] for r in rows], over, 1)[0]) * 60.0)
        if len(rows) > 2
        else float("nan")
    )
    result = {
        "rate_hz": args.rate,
        "seconds": args.seconds,
        "published": s["published"],
        "received": s["received"],
        "dropped": s["published"] - s["received"],
        "latency_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99)},
        "pipeline_ms": {"p50": _pct(pipe, 50), "p99": _pct(pipe, 99)},
        "overhead_ms": {"p50": _pct(over, 50), "p99": _pct(over, 99)},
        "queue_ms": {"p50": _pct(queue, 50), "p99": _pct(queue, 99)},
        "transport_convert_ms": {"p50": _pct(transport, 50), "p99": _pct(transport, 99)},
        "overhead_p50_by_10s": windows,
        "overhead_slope_ms_per_min": round(slope, 3),
        "node_counts_incl_warmup": node_counts,
        "published_incl_warmup": s["published"] + int(3.0 * args.rate),
        "namespace_interfaces": s["interfaces"],
        "node_exit": s.get("node_exit"),
        "node": "bench/_ros_echo.py (no recognition)" if args.echo else "rap_edge_ros.node",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(
        f"\n{args.rate:.0f} Hz of 640x480 bgr8 for {args.seconds:.0f} s: published "
        f"{result['published']}, recognitions received {result['received']} (dropped "
        f"{result['dropped']}); namespace interfaces {s['interfaces']}"
    )
    if node_counts:
        print(
            f"node's counters (with {int(3.0 * args.rate)} warm-up frames): received "
            f"{node_counts['received']} of {result['published_incl_warmup']} published (the "
            f"rest lost in transport), processed {node_counts['processed']}, dropped as stale "
            f"{node_counts['dropped_stale']}"
        )
    print()
    print("| ms | p50 | p99 |\n|---|---:|---:|")
    for key, label in (
        ("latency_ms", "publish to recognitions"),
        ("pipeline_ms", "pipeline's own time"),
        ("overhead_ms", "node overhead (difference)"),
        ("queue_ms", "  of which: waiting for the processing thread"),
        ("transport_convert_ms", ("  of which: the rest (DDS both ways, conversion, callbacks)")),
    ):
        print(f"| {label} | {result[key]['p50']} | {result[key]['p99']} |")
    print(
        "\noverhead p50 per 10 s: "
        + ", ".join(f"{w['overhead_p50_ms']}" for w in windows)
        + f"; slope {result['overhead_slope_ms_per_min']} ms/min"
    )
    out = Path(args.out or f"bench/results/ros_node{'_echo' if args.echo else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
