"""``rap-edge run``: recognise the memory's people in a video, camera, folder or rosbag2."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.cli._options import (
    add_generation_options,
    add_memory_option,
    add_model_options,
    add_object_options,
    add_stream_options,
    open_session,
    stream_policy,
)

if TYPE_CHECKING:
    import argparse

    import numpy as np
    import numpy.typing as npt

    from rap_edge.app import Session
    from rap_edge.generate import Describer
    from rap_edge.sources import ReconnectPolicy


__all__ = ["register"]


def _describer(
    session: Session,
    lock: threading.Lock,
    jsonl: Any,  # noqa: ANN401
) -> Describer:
    """Descriptions off the frame path, printed and written to the JSONL as they finish."""
    session.backend()
    print(f"descriptions: {session.backend_note}", file=sys.stderr)

    def done(frame: int | None, answer: Any) -> None:  # noqa: ANN401 - a GenerationResult
        tags = "; regenerated" if answer.regenerated else ""
        tags += "; template fallback" if answer.fell_back else ""
        print(
            f"[frame {frame}] {answer.text} ({answer.backend}, {answer.total_ms:.0f} ms{tags})",
            file=sys.stderr,
            flush=True,
        )
        if jsonl is not None:
            with lock:
                jsonl.write(
                    json.dumps(
                        {
                            "description": answer.text,
                            "frame": frame,
                            "backend": answer.backend,
                            "regenerated": answer.regenerated,
                            "fell_back": answer.fell_back,
                            "first_token_ms": None
                            if answer.first_token_ms is None
                            else round(answer.first_token_ms, 2),
                            "generate_ms": round(answer.total_ms, 2),
                        }
                    )
                    + "\n"
                )
                jsonl.flush()

    return session.describer(done)


def _letterbox(image: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """``image`` scaled to fit ``size`` (w, h) with its aspect kept, black around it."""
    import cv2
    import numpy as np

    w, h = size
    s = min(w / image.shape[1], h / image.shape[0])
    nw, nh = max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class _Writer:
    """Annotated video out, opened at the first frame's size.

    Later frames of another size are letterboxed into it, aspect kept: a folder of photos of
    mixed sizes is not stretched.
    """

    def __init__(self, path: Path, fps: float) -> None:
        # Checked before the first frame: a run that fails on its first write would already
        # have recognised (and clustered) that frame.
        if path.suffix.lower() not in {".mp4", ".avi"} or not path.parent.is_dir():
            from rap_edge.errors import InvalidInputError

            msg = f"{path}: cannot write a video here (use .mp4 or .avi in an existing folder)"
            raise InvalidInputError(msg)
        self.path = path
        self.fps = fps
        self._writer: Any = None
        self._size: tuple[int, int] | None = None

    def write(self, image: npt.NDArray[np.uint8]) -> None:
        import cv2

        if self._writer is None:
            self._size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter.fourcc(
                *("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v")
            )
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                from rap_edge.errors import InvalidInputError

                msg = f"{self.path}: cannot write a video here (use .mp4 or .avi)"
                raise InvalidInputError(msg)
        if self._size is not None and self._size != (image.shape[1], image.shape[0]):
            self._writer.write(_letterbox(image, self._size))
        else:
            self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def cmd_run(args: argparse.Namespace) -> int:
    from rap_edge.errors import InvalidInputError

    if args.max_fps is not None and not 0 < args.max_fps <= 1000:  # noqa: PLR2004
        msg = f"--max-fps must be in (0, 1000], got {args.max_fps}"
        raise InvalidInputError(msg)
    policy = stream_policy(args)  # checked before the models load
    with open_session(args, isolate=True) as session:
        return _run(args, session, policy)


def _run(args: argparse.Namespace, session: Session, policy: ReconnectPolicy) -> int:
    import numpy as np
    from tqdm import tqdm

    from rap_edge.errors import RapEdgeError
    from rap_edge.pipeline import UnknownClusters, annotate
    from rap_edge.sources import CaptureSource, Gap, open_source

    memory = session.memory
    unknown = None
    if not args.no_cluster:
        folder = (
            Path(args.unknown_dir)
            if args.unknown_dir
            else (memory.path / "unknown" if memory is not None else None)
        )
        unknown = UnknownClusters(
            folder, threshold=session.thresholds.get(session.models.encoder_id)
        )
    jsonl_lock = threading.Lock()  # the describer's thread writes to the JSONL too
    jsonl = Path(args.jsonl).open("w", encoding="utf-8") if args.jsonl else None  # noqa: SIM115
    describer = _describer(session, jsonl_lock, jsonl) if session.settings.describe else None
    pipe = session.pipeline(unknown=unknown)
    writer = None
    processed = 0
    stages: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    last = 0.0
    fps_est: float | None = None
    try:
        with open_source(
            args.source,
            topic=args.topic,
            sequence=True if args.sequence else None,
            policy=policy,
        ) as source:
            print(source.describe(), file=sys.stderr)
            if jsonl is not None and isinstance(source, CaptureSource):
                out = jsonl

                def gap_line(gap: Gap) -> None:  # a stream's outage: one line when it ends
                    with jsonl_lock:
                        out.write(json.dumps(gap.to_json()) + "\n")
                        out.flush()

                source.on_gap = gap_line
            # A single image or a folder of photos: every frame stands alone (no track, no
            # reused embedding, no vote carried from one photo to the next).
            independent = source.independent
            live = source.kind == "camera"
            if args.out:
                writer = _Writer(Path(args.out), args.max_fps or 15.0)
            bar = tqdm(total=source.total, unit="frame", desc="run", disable=None, file=sys.stderr)
            for frame in source:
                bar.update(1)
                if args.max_frames and processed >= args.max_frames:
                    break
                if args.max_fps:
                    wait = last + 1.0 / args.max_fps - time.perf_counter()
                    if wait > 0:
                        if live:  # latest-first: drop this frame rather than fall behind
                            continue
                        time.sleep(wait)
                last = time.perf_counter()
                try:
                    result = pipe.process(
                        frame.image,
                        index=frame.index,
                        timestamp=frame.timestamp if frame.timestamp is not None else time.time(),
                        source=frame.source,
                        independent=independent,
                    )
                except RapEdgeError as err:  # one bad frame never ends the run
                    source.skipped += 1
                    source.errors.append(f"frame {frame.index} ({frame.source}): {err}")
                    continue
                processed += 1
                spent = time.perf_counter() - last
                fps_est = 1 / spent if fps_est is None else 0.9 * fps_est + 0.1 / max(spent, 1e-6)
                bar.set_postfix(fps=f"{fps_est:.1f}", faces=len(result.recognitions))
                for k, v in result.timings_ms.items():
                    stages.setdefault(k, []).append(v)
                if describer is not None:
                    describer.offer(result)
                if jsonl is not None:
                    line = {"source": frame.source, **result.to_json()}
                    if frame.timestamp is None:
                        line["timestamp"] = None
                    with jsonl_lock:
                        jsonl.write(json.dumps(line) + "\n")
                        jsonl.flush()
                if writer is not None:
                    writer.write(annotate(frame.image, result, fps_est))
            bar.close()
            skipped, errors = source.skipped, list(source.errors)
    finally:
        if describer is not None:
            describer.close()
        if jsonl is not None:
            jsonl.close()
        if writer is not None:
            writer.close()
    wall = time.perf_counter() - t0
    print(
        f"processed {processed} frame(s) in {wall:.1f} s ({processed / max(wall, 1e-9):.1f} "
        f"FPS), skipped {skipped}",
        file=sys.stderr,
    )
    for msg in errors[-5:]:
        print(f"  skipped: {msg}", file=sys.stderr)
    if stages:
        p50 = ", ".join(f"{k} {float(np.median(v)):.1f}" for k, v in stages.items())
        print(f"per-stage p50 ms: {p50}", file=sys.stderr)
    if unknown is not None and unknown.clusters:
        print(
            f"unknown faces: {len(unknown.clusters)} cluster(s) in {unknown.folder}; enroll "
            "one with `rap-edge memory enroll-unknown CLUSTER --name NAME`",
            file=sys.stderr,
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run``."""
    p = sub.add_parser(
        "run",
        help="recognise the memory's people in a video, camera, image folder or rosbag2",
        description="Detects faces in every frame, tracks them, embeds each track every few "
        "frames, searches the memory and decides known / unknown / uncertain. Writes one JSON "
        "line per frame (--jsonl) and an annotated video (--out); shows a progress bar with "
        "live FPS. Bad frames are skipped and counted, never fatal.",
    )
    p.add_argument(
        "--source",
        required=True,
        help="video file, camera index (0) or stream URL, image folder, single "
        "image, or rosbag2 (folder or .db3/.mcap file)",
    )
    p.add_argument(
        "--topic",
        default=None,
        help="rosbag2 image topic (default: the only/first "
        "sensor_msgs Image or CompressedImage topic)",
    )
    add_memory_option(p)
    p.add_argument(
        "--out", metavar="VIDEO", default=None, help="write an annotated video (.mp4 or .avi)"
    )
    p.add_argument(
        "--jsonl",
        metavar="FILE",
        default=None,
        help="write one JSON line per frame: source, timestamp, recognitions",
    )
    p.add_argument(
        "--max-fps",
        type=float,
        default=None,
        help="process at most this many frames per second (cameras drop frames, files wait)",
    )
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    p.add_argument(
        "--embed-every",
        type=int,
        default=None,
        help="re-embed a tracked face at least every N frames (default 10; 1: every frame)",
    )
    p.add_argument(
        "--no-track",
        action="store_true",
        help="treat every frame on its own (no tracks, no reuse, no vote)",
    )
    p.add_argument(
        "--sequence",
        action="store_true",
        help="an image folder holds the frames of one recording: track faces across them "
        "(default: a folder is independent photos unless its files are named like frames, "
        "frame_000123.png: one prefix and zero-padded numbers of 4+ digits)",
    )
    p.add_argument(
        "--unknown-dir",
        metavar="DIR",
        default=None,
        help="where unknown-face clusters and crops go (default: <memory>/unknown)",
    )
    p.add_argument("--no-cluster", action="store_true", help="do not cluster unknown faces")
    p.add_argument(
        "--describe",
        action="store_true",
        default=None,
        help="describe the scene in words whenever the recognised set changes, on a "
        "worker thread the frame loop never waits for (a newer request replaces a "
        "queued one); lines go to stderr and the JSONL",
    )
    p.add_argument(
        "--describe-every",
        type=float,
        default=None,
        metavar="S",
        help="with --describe, also describe every S seconds (default 0: only on changes)",
    )
    add_generation_options(p)
    add_stream_options(p)
    add_model_options(p)
    add_object_options(p)
    p.set_defaults(func=cmd_run)
