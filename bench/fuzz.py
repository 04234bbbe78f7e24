#!/usr/bin/env python3
"""The fuzzers of tests/fuzz with a long budget: image headers, the source normaliser, the ROS
image conversion and the RAP import.

The test suite runs them with ``RAP_EDGE_FUZZ_EXAMPLES=60`` (a few seconds); this runs each
with ``--examples`` (default 5000) and reports, per fuzzer, the outcome and the time. A failure
prints Hypothesis' smallest failing example; rerun one with
``RAP_EDGE_FUZZ_EXAMPLES=N .venv/bin/python -m pytest tests/fuzz -k NAME``.

Usage:
    .venv/bin/python bench/fuzz.py [--examples N] [--out bench/results/fuzz.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000, help="examples per fuzzer")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("-k", default=None, help="only the fuzzers matching this expression")
    args = parser.parse_args(argv)
    env = dict(os.environ, RAP_EDGE_FUZZ_EXAMPLES=str(args.examples))
    listing = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--collect-only",
            "-p",
            "no:cacheprovider",
            "tests/fuzz",
            *(["-k", args.k] if args.k else []),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    ids = [line for line in listing.stdout.splitlines() if "::" in line]
    rows = []
    for test_id in ids:
        start = time.perf_counter()
        run = subprocess.run(  # noqa: S603 - this interpreter, collected test ids
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_id],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        seconds = time.perf_counter() - start
        ok = run.returncode == 0
        rows.append(
            {
                "fuzzer": test_id.split("::", 1)[1],
                "file": test_id.split("::", 1)[0],
                "examples": args.examples,
                "passed": ok,
                "seconds": round(seconds, 1),
                "failure": "" if ok else run.stdout[-3000:],
            }
        )
        print(f"{'ok    ' if ok else 'FAILED'} {seconds:7.1f} s  {test_id}", flush=True)
        if not ok:
            print(run.stdout[-3000:], flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
