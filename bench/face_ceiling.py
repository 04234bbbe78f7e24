#!/usr/bin/env python3
"""How far the face descriptor itself can go on a labelled set: the best threshold, in sample.

Every photo's largest face (clean and every single-face condition) is embedded; each identity
is enrolled from its first clean photo. Each probe is named as its
best-scoring identity when that score reaches a threshold. The script sweeps the threshold and
reports, pooled over all probes, the best recall any single threshold reaches while precision
stays at least ``--precision`` and distractor rejection at least ``--rejection``, and the share
of probes whose best-scoring identity is right at all (no threshold can do better).

The threshold here is chosen *on the evaluated photos* (an oracle), so this is an upper bound
for a given descriptor, enrollment and set, not a result: ``bench/eval_crossval.py`` gives the
held-out figures. It answers whether a target is reachable by tuning the decision, or needs a
better descriptor, better enrollment or better faces.

Example:
    python bench/face_ceiling.py --labelled DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rap_edge.app import Session, Settings
from rap_edge.pipeline import LabelledSet
from rap_edge.pipeline._evaluate import MULTI_FACE_CONDITIONS
from rap_edge.pipeline._faces import FaceModels, largest
from rap_edge.pipeline._quality import denoise_if_grainy


def face_chips(models: FaceModels, photos: list[Path]) -> list[np.ndarray | None]:
    """The aligned chip of each photo's largest face, as the pipeline cuts it (None: no face)."""
    import cv2

    out: list[np.ndarray | None] = []
    for path in tqdm(photos, desc="faces", unit="photo", leave=False):
        read = cv2.imread(str(path))
        if read is None:
            out.append(None)
            continue
        raw = np.asarray(read, np.uint8)
        clean = denoise_if_grainy(raw)
        img = raw if clean is None else clean
        face = largest(models.detect(img, fallback=True))
        if face is None:
            out.append(None)
            continue
        out.append(models.chip(img, models.landmarks_for_detections(img, [face])[0]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelled", required=True)
    parser.add_argument("--models", default=None)
    parser.add_argument("--precision", type=float, default=0.99)
    parser.add_argument("--rejection", type=float, default=0.98)
    parser.add_argument(
        "--halves",
        action="store_true",
        help="enroll only half of the identities per probe, as bench/eval_crossval.py's folds "
        "do (alternate identities and distractors); fewer enrolled, fewer wrong matches",
    )
    parser.add_argument("--out", default="bench/results/face_ceiling.json")
    args = parser.parse_args()
    full = LabelledSet.load(args.labelled)
    models = Session.open(
        Settings(models=args.models, provider="cpu"), memory="none", embed=False
    ).models
    names = sorted(full.identities)
    enrolled = [full.identities[n][0] for n in names]
    found = face_chips(models, enrolled)
    missing = [str(p) for p, f in zip(enrolled, found, strict=True) if f is None]
    if missing:
        sys.exit(f"no face found in the enrollment photo(s): {', '.join(missing)}")
    gallery = models.embed_chips([f for f in found if f is not None])
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)

    probes: list[tuple[str, Path, str | None]] = []
    sets = {"clean": full, **full.conditions()}
    for cond, s in sets.items():
        if cond in MULTI_FACE_CONDITIONS:
            continue
        for n, photos in s.identities.items():
            probes += [(cond, p, n) for p in photos[1:]]
        probes += [(cond, p, None) for p in s.distractors]
    chips = face_chips(models, [p for _, p, _ in probes])
    # The half each probe belongs to: its identity's, or for a distractor its file name's.
    dnames = sorted({p.name for _, p, lab in probes if lab is None})
    half = {n: i % 2 for i, n in enumerate(names)} | {n: i % 2 for i, n in enumerate(dnames)}
    best = np.full(len(probes), -1.0)
    named: list[str | None] = [None] * len(probes)
    for i, f in enumerate(chips):
        if f is None:
            continue  # no face: never named, whatever the threshold
        v = models.embed_chips([f])[0]
        sims = gallery @ (v / np.linalg.norm(v))
        if args.halves:
            _, path, lab = probes[i]
            mine = half[lab if lab is not None else path.name]
            sims = np.where([half[n] == mine for n in names], sims, -1.0)
        j = int(np.argmax(sims))
        best[i], named[i] = float(sims[j]), names[j]
    labels = [lab for _, _, lab in probes]
    faces = [i for i, lab in enumerate(labels) if lab is not None]
    distractors = [i for i, lab in enumerate(labels) if lab is None]
    top1 = float(np.mean([named[i] == labels[i] for i in faces]))
    curve = []
    for t in np.round(np.arange(0.80, 0.99, 0.0025), 4):
        tp = sum(best[i] >= t and named[i] == labels[i] for i in faces)
        fp = sum(best[i] >= t and named[i] != labels[i] for i in faces)
        rej = sum(best[i] < t for i in distractors)
        curve.append(
            {
                "threshold": float(t),
                "precision": tp / (tp + fp) if tp + fp else 1.0,
                "recall": tp / len(faces),
                "rejection": rej / len(distractors) if distractors else 1.0,
            }
        )
    ok = [
        c for c in curve if c["precision"] >= args.precision and c["rejection"] >= args.rejection
    ]
    top = max(ok, key=lambda c: c["recall"]) if ok else None
    report = {
        "encoder": models.encoder_id,
        "enrolled": "half of the identities per probe" if args.halves else "all identities",
        "probes": len(faces),
        "distractor_probes": len(distractors),
        "no_face": sum(chips[i] is None for i in faces),
        "top1_right": top1,
        "targets": {"precision": args.precision, "rejection": args.rejection},
        "best_recall_meeting_targets": top,
        "curve": curve,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{report['encoder']}: {len(faces)} face probes, {len(distractors)} distractor probes; "
        f"enrolled: {report['enrolled']}"
    )
    print(f"best-scoring identity right (any threshold): {top1:.3f}")
    if top:
        print(
            f"best recall at precision >= {args.precision} and rejection >= {args.rejection}: "
            f"{top['recall']:.3f} (threshold {top['threshold']}, precision "
            f"{top['precision']:.3f}, rejection {top['rejection']:.3f}); in sample, an upper bound"
        )
    else:
        print("no threshold meets the precision and rejection targets")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
