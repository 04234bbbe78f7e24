"""``rap-edge eval`` and ``rap-edge calibrate thresholds`` on a labelled face folder.

``rap-edge calibrate collect`` samples an INT8 calibration set from a video, recording or camera
(:mod:`rap_edge.calibsets`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.app import THRESHOLDS_FILE
from rap_edge.cli._options import add_model_options, open_session

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable

    from rap_edge.pipeline import EvalReport

__all__ = ["format_report", "register"]

_FOLDER_HELP = (
    "labelled folder: DIR/<identity>/*.jpg (first photo(s) enrolled, the rest "
    "tested), DIR/_distractors/*.jpg (never enrolled), optional "
    "DIR/conditions/<name>/ degraded copies (see calibration/README.md; "
    "`python -m calibration.labelled` builds one from real photos)"
)


def _f(v: float | None) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def format_report(name: str, rep: EvalReport, *, confusion: bool = True) -> str:
    """A human-readable report: totals, per identity, confusion table."""
    lines = [
        f"== {name}: {rep.tests} test photo(s), {rep.distractors} distractor(s); "
        f"precision {_f(rep.precision)}, recall {_f(rep.recall)}, distractors rejected "
        f"{_f(rep.distractor_rejection)}; no face found in {rep.no_face}"
        + (f", unreadable {rep.unreadable}" if rep.unreadable else "")
    ]
    lines.append(f"  {'identity':<22} {'tests':>5} {'TP':>4} {'FP':>4} {'prec':>6} {'recall':>6}")
    for ident, m in rep.per_identity.items():
        lines.append(
            f"  {ident:<22} {int(m['tests']):>5} {int(m['true_pos']):>4} "
            f"{int(m['false_pos']):>4} {_f(m['precision']):>6} {_f(m['recall']):>6}"
        )
    if confusion:
        cols = sorted({c for row in rep.confusion.values() for c in row})
        lines.append("  confusion (rows: truth, columns: outcome per photo)")
        lines.append("  " + " " * 22 + " ".join(f"{c[:10]:>10}" for c in cols))
        for row, counts in rep.confusion.items():
            lines.append(f"  {row[:22]:<22}" + " ".join(f"{counts.get(c, 0):>10}" for c in cols))
    return "\n".join(lines)


def _no_nan(value: Any) -> Any:  # noqa: ANN401 - any JSON tree
    """NaN (a metric with nothing to count) as null, so the JSON is strict."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rap_edge.pipeline import (
        LabelledSet,
        PipelineRecognizer,
        evaluate,
    )

    labelled = LabelledSet.load(args.labelled)
    session = open_session(args, memory="none")
    models, thresholds = session.models, session.thresholds
    enc = models.encoder_id
    recognizer = PipelineRecognizer(
        models,
        thresholds=thresholds,
        config=session.pipeline_config(),
    )

    def bar(desc: str) -> Any:  # noqa: ANN401
        return lambda it: tqdm(it, desc=desc, unit="photo", disable=None, file=sys.stderr)

    reports = {
        "clean": evaluate(
            recognizer,
            labelled,
            enroll_per_identity=args.enroll_per_identity,
            progress=bar("clean"),
        )
    }
    conditions = labelled.conditions()
    wanted = None if args.conditions == "all" else set(args.conditions.split(","))
    if args.conditions != "none":
        for name, cond in conditions.items():
            if wanted is None or name in wanted:
                tests = cond.tests_like(labelled, args.enroll_per_identity)
                reports[name] = evaluate(
                    recognizer,
                    labelled,
                    tests=tests,
                    enroll_per_identity=args.enroll_per_identity,
                    progress=bar(name),
                )
    if args.json:
        print(
            json.dumps(
                _no_nan(
                    {
                        "labelled": str(labelled.root),
                        "encoder": enc,
                        "threshold": thresholds.get(enc),
                        "margin": thresholds.margin,
                        "enroll_per_identity": args.enroll_per_identity,
                        "conditions": {k: v.to_json() for k, v in reports.items()},
                    }
                ),
                indent=1,
                allow_nan=False,
            )
        )
    else:
        for name, rep in reports.items():
            print(format_report(name, rep, confusion=name == "clean" or args.confusion))
    return 0


def cmd_calibrate_thresholds(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rap_edge.pipeline import LabelledSet, calibrate_labelled

    labelled = LabelledSet.load(args.labelled)
    session = open_session(args, memory="none", say=False)
    models = session.models

    def bar(desc: str) -> Callable[[Iterable[Any]], Iterable[Any]]:
        return lambda it: tqdm(it, desc=desc, unit="photo", disable=None, file=sys.stderr)

    conditions = labelled.conditions() if args.quality_gate else None
    result = calibrate_labelled(
        models,
        labelled,
        far=args.far,
        conditions=conditions,
        progress=bar("embedding"),
        probe_progress=bar("degraded copies"),
    )
    probes = result.get("low_quality_probes") is not None
    result.update(
        {
            "command": "rap-edge calibrate thresholds --labelled DIR --far "
            f"{args.far}"
            + (f" --tiles {args.tiles}" if args.tiles else "")
            + (" --no-flip" if args.no_flip else "")
            + (" --quality-gate" if args.quality_gate else ""),
            "labelled": str(labelled.root),
            "identities": len(labelled.identities),
            "distractors": len(labelled.distractors),
            "manifest_threshold": models.encoder.manifest.threshold,
        }
    )
    out = Path(args.out) if args.out else session.models_dir / THRESHOLDS_FILE
    data: dict[str, Any] = {"version": 1, "encoders": {}}
    if out.is_file():
        try:
            old = json.loads(out.read_text(encoding="utf-8"))
            if isinstance(old, dict) and isinstance(old.get("encoders"), dict):
                data["encoders"] = old["encoders"]
        except (OSError, ValueError):
            pass  # replaced below
    data["encoders"][models.encoder_id] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(
        f"{models.encoder_id}: threshold {result['threshold']:.4f} for FAR <= {args.far} "
        f"(measured FAR {result['far']:.4f}, FRR {result['frr']:.4f}; "
        f"{result['genuine_pairs']} genuine / {result['impostor_pairs']} impostor pairs; "
        f"EER {result['eer']:.4f} at {result['eer_threshold']}); "
        f"{result['photos_without_face']} photo(s) without a face skipped; wrote {out}"
    )
    low = result.get("low_quality_threshold")
    if probes:
        print(
            f"low-quality faces ({result['low_quality_probes']} of {result['probes']} degraded "
            "copies): "
            + (
                f"named from {low:.4f}, uncertain between {result['threshold']:.4f} and it "
                f"({result['low_quality_impostor_pairs']} impostor pairs)"
                if low is not None
                else "too few impostor pairs to calibrate; no quality gate"
            )
        )
    elif args.quality_gate:
        print("no quality gate: the labelled set has no conditions/ (degraded copies)")
    return 0


def cmd_calibrate_collect(args: argparse.Namespace) -> int:
    from rap_edge.calibsets import collect

    manifest = collect(
        args.source,
        Path(args.out),
        frames=args.frames,
        min_change=args.min_change,
        force=args.force,
        topic=args.topic,
        max_seconds=args.max_seconds,
    )
    print(
        f"wrote {Path(args.out) / 'set.json'}: {manifest['summary']['kept']} frame(s) from "
        f"{manifest['source']}"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eval`` and ``calibrate``."""
    p = sub.add_parser(
        "eval",
        help="enroll the first photo(s) per identity, recognise the rest, report",
        description="Precision and recall per identity, distractor rejection and a confusion "
        "table, on a labelled folder and its degraded conditions. " + _FOLDER_HELP,
    )
    p.add_argument("--labelled", required=True, metavar="DIR", help=_FOLDER_HELP)
    p.add_argument(
        "--enroll-per-identity",
        type=int,
        default=1,
        help="photos enrolled per identity (default 1)",
    )
    p.add_argument(
        "--conditions",
        default="all",
        help="degraded conditions to run: all, none, or a comma list (default all)",
    )
    p.add_argument(
        "--confusion",
        action="store_true",
        help="print the confusion table for every condition, not just clean",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_options(p)
    p.set_defaults(func=cmd_eval)

    cal = sub.add_parser(
        "calibrate",
        help="calibrate recognition thresholds",
        description="Calibration from labelled data.",
    )
    cmds = cal.add_subparsers(dest="calibrate_command", metavar="ACTION", required=True)
    p = cmds.add_parser(
        "thresholds",
        help="per-encoder threshold for a target false-accept rate",
        description="Embeds the largest face of every photo, scores all genuine pairs (same "
        "identity) and impostor pairs (different identities, distractor vs identity), and "
        "writes the least threshold whose false-accept rate is at most --far, with the pair "
        "counts and the FAR/FRR curve. " + _FOLDER_HELP,
    )
    p.add_argument("--labelled", required=True, metavar="DIR", help=_FOLDER_HELP)
    p.add_argument(
        "--far",
        type=float,
        default=0.001,
        help="target false-accept rate on impostor pairs (default 0.001)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="threshold file to write or update (default: thresholds.json in the models "
        "folder, where every command finds it)",
    )
    p.add_argument(
        "--quality-gate",
        action="store_true",
        help="also calibrate the low-quality threshold on the labelled set's conditions/: "
        "small, blurred or dim faces scoring under it are 'uncertain' instead of named. Off by "
        "default: held out it removed 2 of 14 wrong names and cost 45 right ones (see "
        "docs/retrieve.md)",
    )
    add_model_options(p, thresholds=False)
    p.set_defaults(func=cmd_calibrate_thresholds)

    from rap_edge.calibsets import DEFAULT_FRAMES, DEFAULT_MIN_CHANGE

    p = cmds.add_parser(
        "collect",
        help="sample an INT8 calibration set from a video, recording or camera",
        description="Reads the source and keeps up to --frames diverse frames (near-duplicates "
        "skipped, spread over the stream when its length is known) as JPEG files with a "
        "manifest, set.json (file hashes, frame indices and times). `python -m "
        "export.quantize --set DIR` and `rap-edge export engine --calib DIR` take the folder; "
        "a bare name means calibration/sets/NAME. A camera stops at --frames, --max-seconds or "
        "Ctrl-C (the set is written with what was kept).",
    )
    p.add_argument(
        "--source",
        required=True,
        help="video file, image folder, rosbag2 recording, camera index, /dev/video*, "
        "stream URL or GStreamer pipeline (as `rap-edge run --source`)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="set folder to write, e.g. calibration/sets/kitchen",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_FRAMES,
        help=f"most frames to keep (default {DEFAULT_FRAMES})",
    )
    p.add_argument(
        "--min-change",
        type=float,
        default=DEFAULT_MIN_CHANGE,
        help="near-duplicate threshold: mean absolute difference of 32x24 grey "
        "thumbnails, 0..1 of the grey range, against the last and every kept frame "
        f"(default {DEFAULT_MIN_CHANGE}; 0 keeps every frame)",
    )
    p.add_argument("--topic", help="image topic of a rosbag2 recording (default: picked)")
    p.add_argument(
        "--max-seconds", type=float, help="stop reading after this many seconds (cameras)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the set in a non-empty --out (removes only its set.json and *.jpg files)",
    )
    p.set_defaults(func=cmd_calibrate_collect)
