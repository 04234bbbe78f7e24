#!/usr/bin/env python3
"""ONNX Runtime's thread spinning on and off, side by side: face pipeline FPS, object pass.

rap-edge opens its CPU sessions with ``session.intra_op.allow_spinning`` off
(``RAP_EDGE_ORT_SPIN=1`` restores ONNX Runtime's default). The pipeline runs several small
models back to back (face detector, landmarks, embedder; detector then embedder for objects);
with spinning on, one session's worker threads keep spinning after its run and take the cores
from the next session. This bench runs the same two benches in subprocesses, alternating the
setting round by round so a shared machine's load falls on both alike, and reports medians:

* ``bench/pipeline.py --frames F --sizes 10`` (faces, 640x480, track reuse on and off);
* ``python -m bench.objects`` (the object pass on the cat photo: NanoDet + one MobileNetV2).

Example:
    python bench/ort_spin.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for bench._common
from bench._common import write_report  # noqa: E402


def _run(cmd: list[str], spin: str) -> str:
    env = dict(os.environ, RAP_EDGE_ORT_SPIN=spin)
    done = subprocess.run(  # noqa: S603 - fixed argv
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        msg = f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}"
        raise SystemExit(msg)
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--frames", type=int, default=90, help="frames per pipeline case")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ort_spin.json")
    args = parser.parse_args(argv)
    rows: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for label, spin in (("off", "0"), ("on", "1")):
                out = Path(tmp) / f"pipe-{label}-{r}.json"
                _run(
                    [
                        sys.executable,
                        "bench/pipeline.py",
                        "--frames",
                        str(args.frames),
                        "--sizes",
                        "10",
                        "--out",
                        str(out),
                    ],
                    spin,
                )
                for row in json.loads(out.read_text())["rows"]:
                    key = f"faces_fps_tiles{row['tiles']}_reuse_{row['reuse']}".lower()
                    rows[label].setdefault(key, []).append(row["fps"])
                report = json.loads(
                    _run([sys.executable, "-m", "bench.objects", "--runs", "15"], spin)
                )
                cat = next(x for x in report["speed_640x480"] if x["photo"] == "chelsea.png")
                rows[label].setdefault("object_pass_cat_p50_ms", []).append(
                    cat["nanodet_pass_p50_ms"]
                )
                print(f"round {r + 1} spinning {label} done", file=sys.stderr, flush=True)
    med = {k: {m: round(statistics.median(v), 1) for m, v in d.items()} for k, d in rows.items()}
    report = {
        "rounds": args.rounds,
        "load_average_end": round(os.getloadavg()[0], 1),
        "median_spinning_off": med["off"],
        "median_spinning_on": med["on"],
        "ratio_off_to_on": {k: round(med["off"][k] / med["on"][k], 2) for k in med["off"]},
        "all": rows,
    }
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
