#!/usr/bin/env python3
"""Held-out check of the calibrated threshold: 2-fold cross-validation by identity.

``calibration/thresholds.json`` is calibrated on the same identities ``bench/eval_faces.py``
evaluates, which flatters the result. Here the identities (and the distractor photos) are split
into two folds; each fold's threshold is calibrated (same FAR target) on the *other* fold only,
then the fold is evaluated with it (enroll the first photo, test the rest, on the clean set and
every condition). Counts are pooled over both folds. Each fold's gallery holds only half the
identities, so impostor matches are rarer than with all ten enrolled.

``--textbook`` runs the textbook dlib pipeline (``bench/eval_faces.py``'s: HOG detector, 5-point
landmarks, ResNet descriptor, distance < 0.6) on the same folds in the same run, side by side;
its rule is fixed, so every fold is held out for it too.

The quality gate's low-quality threshold (``rap_edge.pipeline._quality``) is calibrated on the
other fold too, from that fold's degraded copies, with ``--quality-gate`` (off by default).

Example:
    python bench/eval_crossval.py --labelled DIR --textbook
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from rap_edge.app import Session, Settings
from rap_edge.pipeline import (
    DEFAULT_MARGIN,
    LabelledSet,
    PipelineConfig,
    PipelineRecognizer,
    Thresholds,
    calibrate_labelled,
    evaluate,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.eval_faces
from bench.eval_faces import TextbookRecognizer, closeup_condition


def subset(full: LabelledSet, names: set[str], distractors: set[str]) -> LabelledSet:
    """The identities in ``names`` and the distractor files whose names are in ``distractors``."""
    return LabelledSet(
        full.root,
        {k: v for k, v in full.identities.items() if k in names},
        [p for p in full.distractors if p.name in distractors],
    )


def _counts(rep: Any) -> dict[str, int]:  # noqa: ANN401 - an EvalReport
    """Pooled counts of one evaluation: true and false positives, tests, distractors."""
    per = rep.per_identity.values()
    return {
        "tp": sum(int(m["true_pos"]) for m in per),
        "fp": sum(int(m["false_pos"]) for m in per),
        "n": sum(int(m["tests"]) for m in per),
        "rej": round((rep.distractor_rejection or 0.0) * rep.distractors),
        "d": int(rep.distractors),
    }


def _rates(a: dict[str, float]) -> dict[str, float]:
    """Precision, recall and distractor rejection of pooled counts (with the counts)."""
    nan = float("nan")
    return {
        "precision": a["tp"] / (a["tp"] + a["fp"]) if a["tp"] + a["fp"] else nan,
        "recall": a["tp"] / a["n"] if a["n"] else nan,
        "distractor_rejection": a["rej"] / a["d"] if a["d"] else nan,
        **a,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelled", required=True)
    parser.add_argument("--models", default=None)
    parser.add_argument("--far", type=float, default=0.002)
    parser.add_argument(
        "--tiles", type=int, default=1, help="1 (default): as `rap-edge run` with no flags"
    )
    parser.add_argument(
        "--textbook", action="store_true", help="also the textbook dlib pipeline, side by side"
    )
    parser.add_argument(
        "--quality-gate",
        action="store_true",
        help="also calibrate and apply the low-quality threshold (off by default, as in "
        "`rap-edge calibrate thresholds`)",
    )
    parser.add_argument("--out", default="bench/results/eval_crossval.json")
    args = parser.parse_args()
    full = LabelledSet.load(args.labelled)
    settings = Settings(models=args.models, provider="cpu")
    models = Session.open(settings, memory="none", embed=False).models
    names = sorted(full.identities)
    folds_ids = [set(names[0::2]), set(names[1::2])]
    dnames = sorted(p.name for p in full.distractors)
    folds_d = [set(dnames[0::2]), set(dnames[1::2])]
    conditions = full.conditions()
    conditions["closeup"] = closeup_condition(
        full, Path(tempfile.mkdtemp(prefix="rap-edge-closeup-"))
    )
    textbook = None
    if args.textbook:
        from rap_edge.models import CARRIERS, ModelStore

        store = ModelStore(None, carriers=[c for c in CARRIERS if c.key == "dlib-face"])
        store.pull()
        textbook = TextbookRecognizer(store)
    pooled: dict[str, dict[str, float]] = {}
    pooled_textbook: dict[str, dict[str, float]] = {}
    folds = []
    for k in (0, 1):
        train = subset(full, folds_ids[1 - k], folds_d[1 - k])
        test = subset(full, folds_ids[k], folds_d[k])
        train_conditions = (
            {c: subset(v, folds_ids[1 - k], folds_d[1 - k]) for c, v in full.conditions().items()}
            if args.quality_gate
            else None
        )
        cal = calibrate_labelled(models, train, far=args.far, conditions=train_conditions)
        th = Thresholds(margin=DEFAULT_MARGIN)
        th.set_default(models.encoder_id, cal["threshold"], origin=f"fold {k} calibration")
        if cal.get("low_quality_threshold") is not None:
            th.low_quality[models.encoder_id] = cal["low_quality_threshold"]
        rec = PipelineRecognizer(models, thresholds=th, config=PipelineConfig(tiles=args.tiles))
        fold: dict[str, Any] = {
            "test_identities": sorted(folds_ids[k]),
            "threshold": cal["threshold"],
            "low_quality_threshold": cal.get("low_quality_threshold"),
            "low_quality_probes": cal.get("low_quality_probes"),
            "low_quality_impostor_pairs": cal.get("low_quality_impostor_pairs"),
            "calibration_pairs": [cal["genuine_pairs"], cal["impostor_pairs"]],
        }
        for cname in ["clean", *conditions]:
            tests = None
            if cname != "clean":
                cond = subset(conditions[cname], folds_ids[k], folds_d[k])
                tests = cond.tests_like(test, 1)
            systems: list[tuple[str, Any, dict[str, dict[str, float]]]] = [
                ("rap-edge", rec, pooled)
            ]
            if textbook is not None:
                systems.append(("textbook", textbook, pooled_textbook))
            for label, recognizer, into in systems:
                counts = _counts(evaluate(recognizer, test, tests=tests))
                acc = into.setdefault(cname, {"tp": 0, "fp": 0, "n": 0, "rej": 0, "d": 0})
                for key in acc:
                    acc[key] += counts[key]
                fold[cname if label == "rap-edge" else f"{cname} (textbook)"] = counts
                print(
                    f"fold {k} {cname} {label}: TP {counts['tp']} FP {counts['fp']} / "
                    f"{counts['n']}, rejected {counts['rej']}/{counts['d']}",
                    file=sys.stderr,
                    flush=True,
                )
        folds.append(fold)
    print(
        f"\n2-fold cross-validation by identity, FAR {args.far}, tiles {args.tiles}; "
        f"thresholds {folds[0]['threshold']:.4f} / {folds[1]['threshold']:.4f}; "
        "low-quality thresholds "
        + " / ".join(
            "none" if f["low_quality_threshold"] is None else f"{f['low_quality_threshold']:.4f}"
            for f in folds
        )
        + "\n"
    )
    rows = {c: _rates(a) for c, a in pooled.items()}
    rows_textbook = {c: _rates(a) for c, a in pooled_textbook.items()}
    if rows_textbook:
        print(
            "| condition | rap-edge precision | recall | rejected | "
            "textbook precision | recall | rejected |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for cname, r in rows.items():
            t = rows_textbook[cname]
            print(
                f"| {cname} | {r['precision']:.3f} | {r['recall']:.3f} | "
                f"{r['distractor_rejection']:.3f} | {t['precision']:.3f} | {t['recall']:.3f} | "
                f"{t['distractor_rejection']:.3f} |"
            )
    else:
        print("| condition | precision | recall | distractors rejected |")
        print("|---|---:|---:|---:|")
        for cname, r in rows.items():
            print(
                f"| {cname} | {r['precision']:.3f} | {r['recall']:.3f} | "
                f"{r['distractor_rejection']:.3f} |"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "far": args.far,
                "tiles": args.tiles,
                "quality_gate": args.quality_gate,
                "encoder": models.encoder_id,
                "folds": folds,
                "pooled": rows,
                **({"pooled_textbook": rows_textbook} if rows_textbook else {}),
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
