"""What the web app costs the pipeline, and how fast its pages and enrollment are.

Measures, on the real exported models and check photos (``make models``):

* frames per second processed by the live runtime from an image-folder source fed as fast as
  it takes them, with the app idle and with N live MJPEG viewers (default 5) reading streams
  over real HTTP from a uvicorn server on 127.0.0.1, in alternating windows (idle, viewers,
  idle, viewers, ... ``--rounds`` pairs) so that other load on a shared machine falls on both
  alike; the cost is the median over pairs of 1 - viewers/idle;
* page load p50 / p90 (``/people``, ``/live``, ``/strangers``, ``/api/health``);
* upload-to-recognised: POST a new person's photo, then POST another photo of them until it
  comes back ``known``.

    .venv/bin/python bench/web.py [--seconds 15] [--rounds 4] [--viewers 5]

Writes ``bench/results/web.json``. The app must not cost more than 10 % of the idle FPS.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "web.json"
PHOTOS = Path.home() / ".cache" / "rap-edge" / "models" / "check-photos"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fps(state: Any, seconds: float) -> float:  # noqa: ANN401 - a WebState
    cam = state.cameras[0].name
    start = state.runtime.stats().sources[cam].processed
    t0 = time.perf_counter()
    time.sleep(seconds)
    done = state.runtime.stats().sources[cam].processed - start
    return float(done / (time.perf_counter() - t0))


def _viewer(url: str, stop: threading.Event, frames: list[int]) -> None:
    import httpx

    got = 0
    with httpx.stream("GET", url, timeout=30) as res:
        for chunk in res.iter_bytes():
            got += chunk.count(b"\xff\xd8\xff")
            if stop.is_set():
                break
    frames.append(got)


def main() -> int:
    """Run the bench; print and write the numbers."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each FPS window")
    ap.add_argument("--rounds", type=int, default=4, help="pairs of windows (idle, then viewers)")
    ap.add_argument("--viewers", type=int, default=5, help="live MJPEG viewers")
    ap.add_argument("--models", type=Path, default=None, help="exported models folder")
    args = ap.parse_args()

    import httpx
    import uvicorn

    from rap_edge.app import Session, Settings
    from rap_edge.memory import Memory
    from rap_edge.web import Sightings, WebConfig, WebState, create_app

    tmp = Path(tempfile.mkdtemp(prefix="rap-edge-bench-web-"))
    try:
        Memory.init(tmp / "mem").close()
        (tmp / "cam").mkdir()
        shutil.copy(PHOTOS / "obama2.jpg", tmp / "cam" / "a.jpg")
        settings = Settings(memory=tmp / "mem", models=args.models, backend="template")
        session = Session.open(settings, memory="required")
        assert session.memory is not None  # noqa: S101
        clusters = session.strangers()
        state = WebState(session, clusters=clusters, sightings=Sightings(session.memory.path))
        port = _port()
        cfg = WebConfig(memory=session.memory.path, auth=False)
        server = uvicorn.Server(
            uvicorn.Config(create_app(state, cfg), host="127.0.0.1", port=port, log_level="error")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=60)

        # Upload-to-recognised (before the camera runs, so it measures the edit alone).
        t0 = time.perf_counter()
        res = client.post(
            "/api/concepts",
            data={"name": "Barack"},
            files=[("photos", ("p.jpg", (PHOTOS / "obama.jpg").read_bytes()))],
        )
        res.raise_for_status()
        enrolled = time.perf_counter() - t0
        probe = (PHOTOS / "obama3.jpg").read_bytes()
        names: list[str | None] = []
        while "Barack" not in names:
            rec = client.post("/api/recognise", files={"photo": ("q.jpg", probe)}).json()
            names = [r["name"] for r in rec["recognitions"]]
        to_recognised = time.perf_counter() - t0

        state.add_source(str(tmp / "cam"), max_fps=1000)
        time.sleep(3.0)  # warm up
        idle_fps: list[float] = []
        watched_fps: list[float] = []
        frames: list[int] = []
        for n in range(args.rounds):
            idle_fps.append(_fps(state, args.seconds))
            stop = threading.Event()
            viewers = [
                threading.Thread(
                    target=_viewer, args=(f"{base}/api/cameras/0/stream.mjpg", stop, frames)
                )
                for _ in range(args.viewers)
            ]
            for v in viewers:
                v.start()
            time.sleep(2.0)  # the viewers connect and their first frames go out
            watched_fps.append(_fps(state, args.seconds))
            stop.set()
            for v in viewers:
                v.join(30)
            print(
                f"round {n + 1}/{args.rounds}: idle {idle_fps[-1]:.2f} FPS, "
                f"{args.viewers} viewers {watched_fps[-1]:.2f} FPS",
                flush=True,
            )

        loads: dict[str, list[float]] = {}
        for path in ("/people", "/live", "/strangers", "/api/health"):
            times = []
            for _ in range(30):
                t = time.perf_counter()
                client.get(path).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            loads[path] = times
        client.close()
        server.should_exit = True
        state.close()
        thread.join(10)
        session.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    costs = [100.0 * (1 - w / i) for i, w in zip(idle_fps, watched_fps, strict=True) if i]
    out = {
        "machine": platform.platform(),
        "cpus": __import__("os").cpu_count(),
        "load_average_end": [round(v, 2) for v in __import__("os").getloadavg()],
        "seconds_per_window": args.seconds,
        "rounds": args.rounds,
        "fps_idle": [round(v, 2) for v in idle_fps],
        "fps_with_viewers": [round(v, 2) for v in watched_fps],
        "fps_idle_median": round(statistics.median(idle_fps), 2),
        "fps_with_viewers_median": round(statistics.median(watched_fps), 2),
        "viewers": args.viewers,
        "viewer_frames": frames,
        "fps_cost_percent_per_round": [round(c, 1) for c in costs],
        "fps_cost_percent": round(statistics.median(costs), 1) if costs else None,
        "page_load_ms": {
            p: {
                "p50": round(statistics.median(v), 1),
                "p90": round(statistics.quantiles(v, n=10)[-1], 1),
            }
            for p, v in loads.items()
        },
        "enroll_upload_s": round(enrolled, 3),
        "upload_to_recognised_s": round(to_recognised, 3),
    }
    print(json.dumps(out, indent=1))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
