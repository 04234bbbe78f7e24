#!/usr/bin/env python3
"""Soak: does a long run leak memory or descriptors, or slow down? Live runtime, then ROS node.

Part 1, the live runtime (``rap_edge.live.LiveRuntime``, as the web app and the node drive it):
a session over a fresh temporary memory (Barack enrolled from ``obama.jpg``; default models),
two sources fed at ``--rate`` Hz each with 640x480 frames made from the real check photos
(Obama, enrolled; Biden, a stranger who is enrolled for part of every row), unknown faces
clustered (``LiveClusters`` in ``<memory>/unknown``, as ``rap-edge serve`` does), a memory
edit cycle once per row through the runtime (add ``Joe`` with ``biden.jpg``, embedded at once;
update his info; remove him), and descriptions on (``describe_every`` seconds, the default
generation backend, as ``rap-edge ask`` picks it: ORT GenAI SmolLM2 INT4 from the model store,
else the template, which the results then name).

Part 2, the ROS 2 node: ``python -m rap_edge_ros.node`` (ROS venv) on two image topics, inside
``scripts/netns_run.sh`` (a private network namespace holding only ``lo``, loopback Fast DDS),
with a probe in the same namespace (``bench/_soak_probe.py``) that publishes both cameras at
``--rate`` Hz, receives ``~/recognitions`` and ``~/descriptions``, runs the same edit cycle
through the node's services and samples the node's process from ``/proc/<pid>``.

Per row (a minute unless ``--row-seconds``): RSS (median of the row's samples), open file
descriptors, threads, children (the LLM's process) and their RSS, latency p50 / p99 from
submit (publish) to result, processed frames per second per source, and the 1-minute load
average (the machine may be shared; load explains latency noise).

Verdicts, after ``--warmup`` minutes: RSS and open descriptors grow less than 5 % (the last row
against the first row after the warm-up); latency p99 has no upward trend: the least-squares
slope over the post-warm-up rows is an upward trend only when its 95 % confidence interval lies
above zero *and* the rise it predicts over those rows exceeds 10 % of their median p99
(significant and large enough to matter; a slope inside the noise of a shared machine is not a
trend). The slope with the load average as a second regressor is reported beside it.

Writes ``--out`` (JSON: every row, the verdicts, the settings, the git commit, the machine) and
the same name with ``.png``: one panel per metric, a column per part, drawn with OpenCV.
A part given 0 minutes is not run; its previous result in ``--out`` is kept when there is one.

Example:
    .venv/bin/python bench/soak.py                    # 30 + 10 minutes
    .venv/bin/python bench/soak.py --minutes 0.5 --node-minutes 0.5 --row-seconds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench._soak_common
from bench._soak_common import (
    EDIT_INFO,
    EDIT_NAME,
    EDITS,
    SHIFTS,
    cpu_pct,
    dir_mb,
    frame_index,
    load1,
    pct,
    sample,
)
from bench.pipeline import compose  # the frames bench/pipeline.py measures

if TYPE_CHECKING:
    from rap_edge.generate import GenerationResult
    from rap_edge.pipeline import FrameResult

ROOT = Path(__file__).resolve().parents[1]
NETNS_RUN = ROOT / "scripts" / "netns_run.sh"
ROS_SETUP = ROOT / "ros2_ws" / "install" / "setup.bash"
DEFAULT_OUT = ROOT / "bench" / "results" / "soak.json"
ROS_DOMAIN = "71"  # a domain of its own (the ROS tests use 61-66)
SOURCES = ("cam/a", "cam/b")
GROWTH_LIMIT_PCT = 5.0
TREND_SHARE = 0.10  # a rise over the post-warm-up rows above 10 % of the median p99 matters
BARACK_INFO = "Barack is our neighbour; he plays basketball on Sundays"
SKIP_EXIT = 77  # netns_run.sh: no network namespace can be made here

# The scenes of each source, each shown for --segment seconds in turn: photos side by side.
GROUPS = (
    (("obama2",), ("obama3", "biden"), ("biden",), ("obama2", "biden", "obama3")),
    (("biden", "obama2"), ("obama3",), ("obama2", "biden"), ("biden", "obama3", "obama2")),
)


# -- frames --------------------------------------------------------------------------------------


def load_photos(folder: Path | None) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """The four check photos (``obama``, ``obama2``, ``obama3``, ``biden``) and their paths."""
    if folder is None:
        from rap_edge.models import CHECK_PHOTOS, ModelStore

        store = ModelStore(None, carriers=[CHECK_PHOTOS])
        store.pull()  # nothing to do once `make models` has run
        paths = {
            f.name[:-4]: store.file(CHECK_PHOTOS.key, f.name)
            for f in CHECK_PHOTOS.files
            if f.name.endswith(".jpg")
        }
    else:
        paths = {p.stem: p for p in folder.glob("*.jpg")}
    photos: dict[str, np.ndarray] = {}
    for key in ("obama", "obama2", "obama3", "biden"):
        img = cv2.imread(str(paths[key])) if key in paths else None
        if img is None:
            msg = f"{key}.jpg: no such check photo in {folder or 'the model store'}"
            raise SystemExit(msg)
        photos[key] = img
    return photos, paths


def source_frames(photos: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Per source, its groups x SHIFTS prepared frames as one array [G*SHIFTS, 480, 640, 3]."""
    return [
        np.stack(
            [compose([photos[k] for k in group], s) for group in groups for s in range(SHIFTS)]
        )
        for groups in GROUPS
    ]


def edit_photo(photo: np.ndarray, longest: int = 1024) -> np.ndarray:
    """The edit's reference photo, scaled so that its longer side is at most ``longest``."""
    s = min(1.0, longest / max(photo.shape[:2]))
    size = (round(photo.shape[1] * s), round(photo.shape[0] * s))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA)


# -- part 1: the live runtime ----------------------------------------------------------------


class _Rows:
    """What arrives during the current row, from the runtime's threads (under ``lock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cur = self._fresh()

    @staticmethod
    def _fresh() -> dict[str, Any]:
        return {
            "latency": {s: [] for s in SOURCES},
            "submitted": dict.fromkeys(SOURCES, 0),
            "late": dict.fromkeys(SOURCES, 0),
            "pipeline": [],
            "queue": [],
            "decisions": {},
            "descriptions": 0,
            "desc_backends": {},
            "desc_ms": [],
            "desc_fell_back": 0,
        }

    def take(self) -> dict[str, Any]:
        with self.lock:
            done, self.cur = self.cur, self._fresh()
        return done

    def on_result(self, source: str, result: FrameResult, meta: Any) -> None:  # noqa: ANN401
        ms = (time.perf_counter() - float(meta)) * 1000.0
        with self.lock:
            c = self.cur
            c["latency"][source].append(ms)
            c["pipeline"].append(float(result.timings_ms.get("total", math.nan)))
            c["queue"].append(float(result.timings_ms.get("queue", math.nan)))
            for r in result.recognitions:
                c["decisions"][r.decision] = c["decisions"].get(r.decision, 0) + 1

    def on_description(
        self,
        source: str,
        index: int | None,
        answer: GenerationResult,
        meta: Any,  # noqa: ANN401
    ) -> None:
        del source, index, meta
        with self.lock:
            c = self.cur
            c["descriptions"] += 1
            c["desc_backends"][answer.backend] = c["desc_backends"].get(answer.backend, 0) + 1
            c["desc_ms"].append(float(answer.total_ms))
            c["desc_fell_back"] += int(answer.fell_back)


def _feed(  # noqa: PLR0913 - a feeder's parts
    rt: Any,  # noqa: ANN401 - a LiveRuntime
    *,
    k: int,
    frames: np.ndarray,
    rate: float,
    segment_frames: int,
    rows: _Rows,
    stop: threading.Event,
) -> None:
    """Submit source ``k``'s frames at ``rate`` Hz until ``stop`` (skipping ahead when late)."""
    period = 1.0 / rate
    start = time.perf_counter() + k * period / 2  # the two cameras half a period apart
    groups = len(frames) // SHIFTS
    i = 0
    while not stop.is_set():
        wait = start + i * period - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        elif -wait > period:  # behind by a whole period (a loaded machine): skip ahead
            skipped = int(-wait / period)
            with rows.lock:
                rows.cur["late"][SOURCES[k]] += skipped
            i += skipped
        rt.submit(
            SOURCES[k],
            frames[frame_index(i, groups, segment_frames)],
            time.perf_counter(),
        )
        with rows.lock:
            rows.cur["submitted"][SOURCES[k]] += 1
        i += 1


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run_live(
    args: argparse.Namespace,
    paths: dict[str, Path],
    frames: list[np.ndarray],
    edit_image: np.ndarray,
) -> dict[str, Any]:
    """Part 1: the live runtime for ``args.minutes``; per-row dicts and what was run."""
    from rap_edge.app import Session, Settings
    from rap_edge.live import LiveRuntime
    from rap_edge.memory import Memory
    from rap_edge.web import LiveClusters

    n_rows = _row_count(args.minutes, args.row_seconds)
    tmp = Path(tempfile.mkdtemp(prefix="rap-soak-live-"))
    try:
        Memory.init(tmp / "mem").close()
        settings = Settings(
            memory=tmp / "mem",
            models=args.models,
            describe=True,
            describe_every=args.describe_every,
            backend=args.backend,
            llm_threads=args.llm_threads,
        )
        t_open = time.perf_counter()
        session = Session.open(settings, memory="required", isolate=True)
        assert session.memory is not None  # noqa: S101 - required
        session.add_concept("Barack", "person", files=[paths["obama"]], info=BARACK_INFO)
        clusters = LiveClusters(
            session.memory.path / "unknown",
            threshold=session.thresholds.get(session.models.encoder_id),
        )
        rows = _Rows()
        rt = LiveRuntime(
            session,
            on_result=rows.on_result,
            on_description=rows.on_description,
            close_session=True,
            unknown=clusters,
        )
        started_s = time.perf_counter() - t_open
        note = session.backend_note
        print(f"[live] session and runtime up in {started_s:.1f} s; descriptions: {note}")
        for line in session.summary():
            print(f"[live] {line}")
        out_rows: list[dict[str, Any]] = []
        stop = threading.Event()
        feeders = [
            threading.Thread(
                target=_feed,
                args=(rt,),
                kwargs={
                    "k": k,
                    "frames": frames[k],
                    "rate": args.rate,
                    "segment_frames": args.segment_frames,
                    "rows": rows,
                    "stop": stop,
                },
                name=f"soak-feed-{k}",
                daemon=True,
            )
            for k in (0, 1)
        ]
        sample_s = min(5.0, args.row_seconds / 4)
        prev = dict.fromkeys(SOURCES, (0, 0, 0, 0))
        t0 = time.monotonic()
        rows.take()
        before, t_before = sample(), time.monotonic()
        for th in feeders:
            th.start()
        try:
            for r in range(n_rows):
                row_start = t0 + r * args.row_seconds
                row_end = row_start + args.row_seconds
                pending = list(EDITS)
                samples: list[dict[str, Any]] = []
                edits: dict[str, dict[str, Any]] = {}
                next_sample = row_start
                while (now := time.monotonic()) < row_end:
                    if pending and now >= row_start + pending[0][1] * args.row_seconds:
                        kind = pending.pop(0)[0]
                        edits[kind] = _edit(rt, kind, edit_image)
                        continue
                    if now >= next_sample:
                        samples.append(sample())
                        next_sample += sample_s
                        continue
                    nxt = min(
                        [next_sample, row_end]
                        + ([row_start + pending[0][1] * args.row_seconds] if pending else [])
                    )
                    time.sleep(max(0.0, min(0.5, nxt - time.monotonic())))
                done = rows.take()
                span = time.monotonic() - row_start
                stats = rt.stats()
                end = sample()
                cpu = cpu_pct(end, before, time.monotonic() - t_before)
                before, t_before = end, time.monotonic()
                srcs: dict[str, Any] = {}
                for s in SOURCES:
                    st = stats.sources.get(s)
                    now_c = (
                        (st.received, st.processed, st.dropped, st.errors) if st else (0, 0, 0, 0)
                    )
                    d = [a - b for a, b in zip(now_c, prev[s], strict=True)]
                    prev[s] = now_c
                    srcs[s] = {
                        "submitted": done["submitted"][s],
                        "feeder_late": done["late"][s],
                        "received": d[0],
                        "processed": d[1],
                        "dropped": d[2],
                        "errors": d[3],
                        "last_errors": list(st.last_errors) if st else [],
                        "rate_hz": round(d[1] / span, 2),
                        "latency_p50_ms": pct(done["latency"][s], 50),
                        "latency_p99_ms": pct(done["latency"][s], 99),
                    }
                with clusters.lock:
                    n_clusters = len(clusters.clusters)
                everything = [x for s in SOURCES for x in done["latency"][s]]
                row = {
                    "row": r,
                    "t_min": round((row_end - t0) / 60.0, 3),
                    "rss_mb": _median([x["rss_mb"] for x in samples] or [end["rss_mb"]]),
                    "rss_mb_max": max([x["rss_mb"] for x in samples] or [end["rss_mb"]]),
                    "rss_mb_end": end["rss_mb"],
                    "fds": end["fds"],
                    "threads": end["threads"],
                    "children": end["children"],
                    "children_names": end["children_names"],
                    "children_rss_mb": _median(
                        [x["children_rss_mb"] for x in samples] or [end["children_rss_mb"]]
                    ),
                    "load1": load1(),
                    "cpu_pct": cpu,
                    "latency_ms": {
                        "p50": pct(everything, 50),
                        "p99": pct(everything, 99),
                        "n": len(everything),
                    },
                    "pipeline_ms_p50": pct(done["pipeline"], 50),
                    "queue_ms_p50": pct(done["queue"], 50),
                    "sources": srcs,
                    "decisions": done["decisions"],
                    "descriptions": done["descriptions"],
                    "description_backends": done["desc_backends"],
                    "description_ms_p50": pct(done["desc_ms"], 50),
                    "descriptions_fell_back": done["desc_fell_back"],
                    "edits": edits,
                    "callback_errors": stats.callback_errors,
                    "unknown_clusters": n_clusters,
                    "memory_dir_mb": dir_mb(tmp / "mem"),
                    "concepts": len(rt.list_concepts()),
                }
                out_rows.append(row)
                _progress("live", row, n_rows * args.row_seconds / 60.0)
        finally:
            stop.set()
            for th in feeders:
                th.join(5)
            final = rt.stats().to_json()
            closed = rt.close(timeout=30.0)
        return {
            "rows": out_rows,
            "startup_s": round(started_s, 2),
            "description_backend": note,
            "real_llm": note.startswith("ortgenai"),
            "final_stats": final,
            "closed_cleanly": closed,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _edit(rt: Any, kind: str, image: np.ndarray) -> dict[str, Any]:  # noqa: ANN401 - LiveRuntime
    """One edit of the cycle through the runtime; its time, or its error."""
    t0 = time.perf_counter()
    try:
        if kind == "add":
            rt.add_concept(EDIT_NAME, "person", info=EDIT_INFO[0], images=[image])
        elif kind == "update":
            rt.update_concept(EDIT_NAME, info=EDIT_INFO[1])
        else:
            rt.remove_concept(EDIT_NAME)
    except Exception as err:  # noqa: BLE001 - counted in the row, the soak goes on
        return {"ok": False, "ms": None, "message": f"{type(err).__name__}: {err}"}
    return {"ok": True, "ms": round((time.perf_counter() - t0) * 1000.0, 1), "message": ""}


def _progress(part: str, row: dict[str, Any], total_min: float) -> None:
    lat = row["latency_ms"]
    rates = "/".join(f"{v['rate_hz']:.1f}" for v in row["sources"].values())
    bad = [k for k, v in row["edits"].items() if not v["ok"]]
    print(
        f"[{part}] {row['t_min']:6.2f}/{total_min:g} min: rss {row['rss_mb']:.1f} MiB "
        f"(+children {row['children_rss_mb']:.1f}), fds {row['fds']}, threads "
        f"{row['threads']}, latency p50 {lat['p50']} p99 {lat['p99']} ms, processed {rates} "
        f"Hz, load {row['load1']:.2f}, descriptions {row['descriptions']} "
        f"{sorted(row['description_backends'])}, edits {'FAILED ' + str(bad) if bad else 'ok'}",
        flush=True,
    )


# -- part 2: the ROS node --------------------------------------------------------------------


def run_node(
    args: argparse.Namespace,
    paths: dict[str, Path],
    frames: list[np.ndarray],
    edit_image: np.ndarray,
) -> dict[str, Any]:
    """Part 2: the node for ``args.node_minutes`` inside the network namespace."""
    from rap_edge.app import Session, Settings
    from rap_edge.memory import Memory

    if not ROS_SETUP.is_file():
        return {"skipped": "ros2_ws is not built (scripts/ros_build.sh)", "rows": []}
    n_rows = _row_count(args.node_minutes, args.row_seconds)
    tmp = Path(tempfile.mkdtemp(prefix="rap-soak-node-"))
    try:
        with (
            Memory.init(tmp / "mem") as mem,
            Session.open(Settings(models=args.models), memory=mem) as session,
        ):
            session.add_concept("Barack", "person", files=[paths["obama"]], info=BARACK_INFO)
        npz = tmp / "frames.npz"
        np.savez(npz, src0=frames[0], src1=frames[1], edit=edit_image)
        cmd = [
            str(NETNS_RUN),
            "python",
            str(ROOT / "bench" / "_soak_probe.py"),
            "--frames",
            str(npz),
            "--memory",
            str(tmp / "mem"),
            "--log",
            str(tmp / "node.log"),
            "--rate",
            str(args.rate),
            "--rows",
            str(n_rows),
            "--row-seconds",
            str(args.row_seconds),
            "--segment-frames",
            str(args.segment_frames),
            "--describe-every",
            str(args.describe_every),
            "--backend",
            args.backend,
            "--llm-threads",
            str(args.llm_threads),
            *(["--models", str(args.models)] if args.models else []),
        ]
        env = {**os.environ, "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", ROS_DOMAIN)}
        print(
            f"[node] {args.node_minutes:g} min inside a private network namespace "
            f"(ROS_DOMAIN_ID {env['ROS_DOMAIN_ID']}) ...",
            flush=True,
        )
        err_path = tmp / "probe.err"
        with err_path.open("w") as err_file:
            proc = subprocess.Popen(  # noqa: S603
                cmd,
                stdout=subprocess.PIPE,
                stderr=err_file,
                text=True,
                cwd=ROOT,
                env=env,
                start_new_session=True,  # a timeout ends the namespace and all in it
            )
            killer = threading.Timer(
                n_rows * args.row_seconds + 300.0,
                lambda: _kill_group(proc.pid),
            )
            killer.start()
            rows: list[dict[str, Any]] = []
            summary: dict[str, Any] = {}
            assert proc.stdout is not None  # noqa: S101 - piped
            for line in proc.stdout:
                if not line.startswith("{"):
                    continue
                msg = json.loads(line)
                if "row" in msg:
                    rows.append(msg["row"])
                    _progress("node", msg["row"], n_rows * args.row_seconds / 60.0)
                elif "summary" in msg:
                    summary = msg["summary"]
            rc = proc.wait()
            killer.cancel()
        node_log = (tmp / "node.log").read_text() if (tmp / "node.log").is_file() else ""
        probe_err = err_path.read_text()
        if rc == SKIP_EXIT:
            return {"skipped": probe_err.strip().splitlines()[-1:], "rows": []}
        if rc != 0 or "error" in summary:
            sys.stderr.write(probe_err[-3000:] + "\n--- node log\n" + node_log[-4000:] + "\n")
        backends = sorted({b for r in rows for b in r["description_backends"]})
        return {
            "rows": rows,
            "probe_exit": rc,
            "error": summary.get("error"),
            "startup_s": summary.get("node_ready_s"),
            "node_llm": summary.get("node_llm"),
            "namespace_interfaces": summary.get("interfaces"),
            "node_exit": summary.get("node_exit"),
            "node_cmd": summary.get("node_cmd"),
            "final_sample": summary.get("final_sample"),
            "description_backends": backends,
            "real_llm": any(b.startswith("ortgenai") for b in backends),
            "strangers_clustered": (tmp / "mem" / "unknown").is_dir(),
            "node_log_tail": node_log.strip().splitlines()[-12:],
            "node_log_warnings": sum(
                1 for ln in node_log.splitlines() if "[WARN]" in ln or "[ERROR]" in ln
            ),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# -- verdicts --------------------------------------------------------------------------------


def _row_count(minutes: float, row_seconds: float) -> int:
    return max(1, round(minutes * 60.0 / row_seconds)) if minutes > 0 else 0


def _t975(df: int) -> float:
    """Two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    exact = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}
    if df in exact:
        return exact[df]
    z = 1.959964  # Cornish-Fisher expansion: within 0.002 of the table for df >= 6
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def growth(rows: list[dict[str, Any]], key: str, warm: int) -> dict[str, Any]:
    """``key`` in the last row against the first row after the warm-up, in percent."""
    if len(rows) <= warm:
        return {"verdict": None, "why": "no row after the warm-up"}
    first, last = float(rows[warm][key]), float(rows[-1][key])
    pct_ = 100.0 * (last - first) / first if first else math.inf
    return {
        "first": first,
        "last": last,
        "growth_pct": round(pct_, 2),
        "limit_pct": GROWTH_LIMIT_PCT,
        "verdict": "pass" if pct_ < GROWTH_LIMIT_PCT else "fail",
    }


def trend(rows: list[dict[str, Any]], warm: int) -> dict[str, Any]:
    """The least-squares slope of latency p99 (ms per minute) over the post-warm-up rows."""
    pts = [
        (r["t_min"], r["latency_ms"]["p99"], r["load1"])
        for r in rows[warm:]
        if r["latency_ms"]["p99"] is not None
    ]
    if len(pts) < 3:  # a slope and its error need three points
        return {"verdict": None, "why": f"{len(pts)} post-warm-up rows (3 needed)"}
    t = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    load = np.array([p[2] for p in pts])
    slope, icept = np.polyfit(t, y, 1)
    resid = y - (slope * t + icept)
    n = len(pts)
    sxx = float(((t - t.mean()) ** 2).sum())
    se = math.sqrt(float((resid**2).sum()) / (n - 2) / sxx) if sxx > 0 else math.inf
    half = _t975(n - 2) * se
    lo, hi = float(slope) - half, float(slope) + half
    rise = float(slope) * float(t[-1] - t[0])
    median = float(np.median(y))
    upward = lo > 0 and rise > TREND_SHARE * median
    with_load = None
    if n >= 4 and float(load.std()) > 0:  # three coefficients and an error
        coef = np.linalg.lstsq(np.column_stack([np.ones(n), t, load]), y, rcond=None)[0]
        with_load = {
            "slope_ms_per_min": round(float(coef[1]), 3),
            "ms_per_load_unit": round(float(coef[2]), 3),
        }
    return {
        "slope_ms_per_min": round(float(slope), 3),
        "ci95_ms_per_min": [round(lo, 3), round(hi, 3)],
        "rise_over_window_ms": round(rise, 2),
        "median_p99_ms": round(median, 2),
        "rise_limit_ms": round(TREND_SHARE * median, 2),
        "rows": n,
        "with_load_regressor": with_load,
        "rule": (
            "upward trend = 95 % CI of the slope above 0 and slope x window > 10 % of the "
            "median p99"
        ),
        "verdict": "fail" if upward else "pass",
    }


def verdicts(rows: list[dict[str, Any]], warm: int) -> dict[str, Any]:
    """Growth of RSS, fds (and, for information, threads and the children's RSS) and trend."""
    v: dict[str, Any] = {
        "warmup_rows": warm,
        "rss": growth(rows, "rss_mb", warm),
        "fds": growth(rows, "fds", warm),
        "threads_info": growth(rows, "threads", warm),
        "children_rss_info": growth(rows, "children_rss_mb", warm)
        if rows and rows[-1].get("children_rss_mb")
        else None,
        "latency_p99_trend": trend(rows, warm),
    }
    rates = [r["sources"][s]["rate_hz"] for r in rows[warm:] for s in r["sources"]]
    v["median_processed_hz_per_source"] = round(float(np.median(rates)), 2) if rates else None
    keys = ("rss", "fds", "latency_p99_trend")
    got = [v[k]["verdict"] for k in keys]
    v["overall"] = None if None in got else ("pass" if all(g == "pass" for g in got) else "fail")
    return v


# -- the plot --------------------------------------------------------------------------------

BLUE, ORANGE, GREEN, RED, PURPLE, GREY = (
    (180, 119, 31),
    (14, 127, 255),
    (44, 160, 44),
    (40, 39, 214),
    (189, 103, 148),
    (127, 127, 127),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi - lo < 1e-9:
        lo, hi = lo - max(1.0, abs(lo) * 0.05), hi + max(1.0, abs(hi) * 0.05)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    out = [first]
    while out[-1] < hi - 1e-9:
        out.append(out[-1] + step)
    return out


def _label(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.3g}"


def _dashed(img: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], color: Any) -> None:  # noqa: ANN401
    n = max(1, int(math.hypot(p1[0] - p0[0], p1[1] - p0[1]) // 8))
    for i in range(0, n, 2):
        a = (p0[0] + (p1[0] - p0[0]) * i // n, p0[1] + (p1[1] - p0[1]) * i // n)
        b = (p0[0] + (p1[0] - p0[0]) * (i + 1) // n, p0[1] + (p1[1] - p0[1]) * (i + 1) // n)
        cv2.line(img, a, b, color, 1, cv2.LINE_AA)


def _panel(  # noqa: PLR0913 - a panel's parts
    img: np.ndarray,
    box: tuple[int, int, int, int],
    *,
    title: str,
    series: list[tuple[str, list[float], list[float | None], Any]],
    xmax: float,
    warm_min: float,
    lines: list[tuple[str, tuple[float, float], tuple[float, float], Any]] | None = None,
) -> None:
    x0, y0, w, h = box
    lines = lines or []
    px0, py0, px1, py1 = x0 + 78, y0 + 30, x0 + w - 20, y0 + h - 42
    ys = [y for _, _, yy, _ in series for y in yy if y is not None]
    ys += [p[1] for _, a, b, _ in lines for p in (a, b)]
    yt = _ticks(min(ys), max(ys)) if ys else [0.0, 1.0]
    ylo, yhi = yt[0], yt[-1]
    xt = _ticks(0.0, xmax, 6)
    xmax = xt[-1]

    def xy(x: float, y: float) -> tuple[int, int]:
        return (
            round(px0 + x / xmax * (px1 - px0)),
            round(py1 - (y - ylo) / (yhi - ylo) * (py1 - py0)),
        )

    if warm_min > 0:
        cv2.rectangle(img, (px0, py0), (xy(min(warm_min, xmax), ylo)[0], py1), (235, 235, 235), -1)
        cv2.putText(img, "warm-up", (px0 + 4, py1 - 6), FONT, 0.4, GREY, 1, cv2.LINE_AA)
    for v in yt:
        y = xy(0, v)[1]
        cv2.line(img, (px0, y), (px1, y), (225, 225, 225), 1)
        cv2.putText(img, _label(v), (x0 + 6, y + 4), FONT, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
    for v in xt:
        x = xy(v, ylo)[0]
        cv2.line(img, (x, py1), (x, py1 + 4), (60, 60, 60), 1)
        cv2.putText(img, _label(v), (x - 8, py1 + 18), FONT, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, (px0, py0), (px1, py1), (60, 60, 60), 1)
    cv2.putText(img, "minutes", (px1 - 60, py1 + 34), FONT, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, title, (x0 + 6, y0 + 20), FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for label, a, b, color in lines:
        _dashed(img, xy(*a), xy(*b), color)
        cv2.putText(img, label, (xy(*a)[0] + 4, xy(*a)[1] + 14), FONT, 0.4, color, 1, cv2.LINE_AA)
    lx = px1
    for label, xs, yy, color in reversed(series):
        pts = [xy(x, y) for x, y in zip(xs, yy, strict=True) if y is not None]
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, color, 2, cv2.LINE_AA)  # noqa: FBT003
        for p in pts:
            cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)
        (tw, _), _ = cv2.getTextSize(label, FONT, 0.45, 1)
        lx -= tw + 34
        cv2.line(img, (lx, y0 + 15), (lx + 20, y0 + 15), color, 2, cv2.LINE_AA)
        cv2.putText(img, label, (lx + 24, y0 + 20), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


def plot(result: dict[str, Any], path: Path) -> None:
    """One panel per metric (rows), one column per part that has rows."""
    parts = [
        (name, result[name])
        for name in ("live", "node")
        if result.get(name) and result[name].get("rows")
    ]
    pw, ph, head = 820, 250, 66
    metrics = 6
    img = np.full((head + ph * metrics, pw * max(1, len(parts)), 3), 255, np.uint8)
    git = result["git"]
    cv2.putText(
        img,
        f"rap-edge soak, {result['date']}, commit {git['commit'][:10]}"
        f"{' + uncommitted changes' if git['dirty'] else ''}",
        (10, 24),
        FONT,
        0.6,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    for c, (name, part) in enumerate(parts):
        rows = part["rows"]
        warm = part["verdicts"]["warmup_rows"]
        rs = part.get("row_seconds", result["settings"]["row_seconds"]) / 60.0
        warm_min = warm * rs
        xs = [r["t_min"] - rs / 2 for r in rows]  # the middle of each row
        xmax = max(r["t_min"] for r in rows)
        what = (
            "part 1: LiveRuntime, 2 sources"
            if name == "live"
            else "part 2: ROS 2 node (netns), 2 topics"
        )
        v = part["verdicts"]
        cv2.putText(
            img,
            f"{what} @ {result['settings']['rate_hz']:g} Hz; overall: {v['overall']}",
            (c * pw + 10, 52),
            FONT,
            0.55,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )

        def draw(  # noqa: PLR0913 - one panel of this column
            i: int,
            title: str,
            series: list[tuple[str, list[float], list[float | None], Any]],
            lines: list[Any] | None = None,
            *,
            col: int = c,
            xmax: float = xmax,
            warm_min: float = warm_min,
        ) -> None:
            _panel(
                img,
                (col * pw, head + i * ph, pw, ph),
                title=title,
                series=series,
                xmax=xmax,
                warm_min=warm_min,
                lines=lines,
            )

        def limit(
            verdict: dict[str, Any], left: float = warm_min, right: float = xmax
        ) -> list[Any]:
            if verdict.get("first") is None:
                return []
            top = verdict["first"] * (1 + GROWTH_LIMIT_PCT / 100)
            return [(f"+{GROWTH_LIMIT_PCT:g} %", (left, top), (right, top), RED)]

        def col_of(key: str, rows: list[dict[str, Any]] = rows) -> list[float | None]:
            return [r[key] for r in rows]

        draw(
            0,
            f"RSS, MiB (process: {_fmt(v['rss'].get('growth_pct'))} %, {v['rss']['verdict']})",
            [
                ("process", xs, col_of("rss_mb"), BLUE),
                (
                    "children (LLM)" if part.get("real_llm") else "children",
                    xs,
                    col_of("children_rss_mb"),
                    PURPLE,
                ),
            ],
            limit(v["rss"]),
        )
        draw(
            1,
            f"open fds ({_fmt(v['fds'].get('growth_pct'))} %, {v['fds']['verdict']})",
            [("fds", xs, col_of("fds"), BLUE)],
            limit(v["fds"]),
        )
        draw(2, "threads", [("threads", xs, col_of("threads"), BLUE)])
        tr = v["latency_p99_trend"]
        rate = float(result["settings"]["rate_hz"])
        fit: list[Any] = []
        pts = [
            (x, r["latency_ms"]["p99"])
            for x, r in list(zip(xs, rows, strict=True))[warm:]
            if r["latency_ms"]["p99"] is not None
        ]
        if tr.get("slope_ms_per_min") is not None and len(pts) > 1:
            k, b = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
            ends = (pts[0][0], pts[-1][0])
            fit = [("fit", *((e, float(k * e + b)) for e in ends), RED)]
        draw(
            3,
            f"latency, ms (p99 slope {_fmt(tr.get('slope_ms_per_min'))} ms/min, {tr['verdict']})",
            [
                ("p50", xs, [r["latency_ms"]["p50"] for r in rows], GREEN),
                ("p99", xs, [r["latency_ms"]["p99"] for r in rows], ORANGE),
            ],
            fit,
        )
        draw(
            4,
            "processed, frames/s per source",
            [
                (
                    s.split("/")[2] if name == "node" else s,
                    xs,
                    [r["sources"][s]["rate_hz"] for r in rows],
                    (BLUE, ORANGE)[i % 2],
                )
                for i, s in enumerate(rows[0]["sources"])
            ],
            [("offered", (0.0, rate), (xmax, rate), GREY)],
        )
        draw(5, "load average, 1 min", [("load1", xs, col_of("load1"), GREY)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        msg = f"{path}: cannot write the plot"
        raise OSError(msg)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


# -- main ------------------------------------------------------------------------------------


def _git() -> dict[str, Any]:
    def run(*a: str) -> str:
        try:
            return subprocess.run(  # noqa: S603
                ["git", *a],  # noqa: S607
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    status = run("status", "--porcelain", "--untracked-files=no")
    dirty = [ln.split(maxsplit=1)[-1] for ln in status.splitlines() if ln.strip()]
    return {"commit": run("rev-parse", "HEAD") or "unknown", "dirty": dirty}


def _machine() -> dict[str, Any]:
    import onnxruntime

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": mem,
        "onnxruntime": onnxruntime.__version__,
        "shared": "other work may run on the same CPUs; see load1 per row",
    }


def main() -> int:
    """Run the parts, write the JSON and the PNG, print the verdicts."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "Parts: 1 = the live runtime in this process (--minutes), 2 = the ROS 2 node in a "
            "private network namespace (--node-minutes; needs scripts/ros_build.sh). Verdicts "
            "(after --warmup): RSS and fds grow < 5 %% (last row vs first post-warm-up row); "
            "latency p99 has no upward trend (slope's 95 %% CI above 0 and its rise > 10 %% of "
            "the median p99 = fail). Writes OUT (.json) and OUT with .png. Needs `make models`."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--minutes", type=float, default=30.0, help="part 1 length (0: skip)")
    ap.add_argument("--node-minutes", type=float, default=10.0, help="part 2 length (0: skip)")
    ap.add_argument("--rate", type=float, default=15.0, help="frames per second per source")
    ap.add_argument("--warmup", type=float, default=2.0, help="minutes left out of verdicts")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (+ .png)")
    ap.add_argument(
        "--row-seconds",
        type=float,
        default=60.0,
        help="seconds per recorded row (and per edit cycle); shorter for a smoke run",
    )
    ap.add_argument(
        "--describe-every", type=float, default=10.0, help="description period, seconds"
    )
    ap.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "ortgenai", "transformers", "template"),
        help="generation backend (auto: ORT GenAI SmolLM2 from the store, else the template)",
    )
    ap.add_argument(
        "--llm-threads", type=int, default=1, help="LLM decoder threads (as `run --describe`)"
    )
    ap.add_argument("--segment", type=float, default=4.0, help="seconds each scene is shown")
    ap.add_argument("--models", type=Path, default=None, help="exported models (<store>/onnx)")
    ap.add_argument(
        "--photos", type=Path, default=None, help="folder with the check photos (the store's)"
    )
    args = ap.parse_args()
    for name in ("minutes", "node_minutes", "warmup"):
        if getattr(args, name) < 0:
            ap.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.rate <= 0 or args.row_seconds <= 0 or args.describe_every < 0 or args.segment <= 0:
        ap.error("--rate, --row-seconds and --segment must be > 0, --describe-every >= 0")
    args.segment_frames = max(1, round(args.segment * args.rate))

    photos, paths = load_photos(args.photos)
    frames = source_frames(photos)
    edit_image = edit_photo(photos["biden"])
    warm = round(args.warmup * 60.0 / args.row_seconds)
    previous: dict[str, Any] = {}
    if args.out.is_file():
        with contextlib.suppress(ValueError):
            previous = json.loads(args.out.read_text())
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git": _git(),
        "machine": _machine(),
        "settings": {
            "minutes": args.minutes,
            "node_minutes": args.node_minutes,
            "rate_hz": args.rate,
            "warmup_min": args.warmup,
            "row_seconds": args.row_seconds,
            "describe_every_s": args.describe_every,
            "backend": args.backend,
            "llm_threads": args.llm_threads,
            "segment_s": args.segment,
            "sources": list(SOURCES),
            "frame": "640x480 bgr8",
            "scenes": [[list(g) for g in groups] for groups in GROUPS],
            "enrolled": {"Barack": "obama.jpg"},
            "edit_cycle": {
                "concept": f"{EDIT_NAME} (biden.jpg, longest side 1024 px)",
                "at_fraction_of_row": dict(EDITS),
            },
            "command": " ".join(["bench/soak.py", *sys.argv[1:]]),
        },
    }
    for name, minutes, run in (
        ("live", args.minutes, run_live),
        ("node", args.node_minutes, run_node),
    ):
        if minutes <= 0:
            if previous.get(name):
                result[name] = {**previous[name], "kept_from": previous.get("date")}
            continue
        part = run(args, paths, frames, edit_image)
        part["git"] = result["git"]
        part["date"] = result["date"]
        part["row_seconds"] = args.row_seconds
        part["verdicts"] = verdicts(part["rows"], warm) if part["rows"] else None
        result[name] = part
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    png = args.out.with_suffix(".png")
    plot(result, png)
    for name in ("live", "node"):
        got = result.get(name)
        if not got:
            continue
        v = got.get("verdicts")
        if not v:
            print(f"{name}: {got.get('skipped') or got.get('error') or 'no rows'}")
            continue
        tr = v["latency_p99_trend"]
        print(
            f"{name}: RSS {_fmt(v['rss'].get('growth_pct'))} % ({v['rss']['verdict']}), fds "
            f"{_fmt(v['fds'].get('growth_pct'))} % ({v['fds']['verdict']}), p99 slope "
            f"{_fmt(tr.get('slope_ms_per_min'))} ms/min CI {tr.get('ci95_ms_per_min')} "
            f"({tr['verdict']}), median processed {v['median_processed_hz_per_source']} Hz per "
            f"source, real LLM: {got.get('real_llm')}; overall {v['overall']}"
        )
    print(f"wrote {args.out} and {png}")
    failed = any(
        result.get(n) and result[n].get("error") for n in ("live", "node") if result.get(n)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
