#!/usr/bin/env python3
"""rap-edge's face pipeline against the textbook pipeline, on a labelled set and its conditions.

The textbook pipeline is what most face-recognition code does with the same dlib weights:
dlib's HOG detector (upsampled once), its 5-point landmarks, ``get_face_chip`` and the ResNet
descriptor, a face named when its nearest enrolled descriptor is within Euclidean distance 0.6
(dlib's own rule). rap-edge: the SSD detector, numpy landmarks through the fitted box map, the
OpenCV chip, the ONNX descriptor, the calibrated threshold with the margin rule. Both enroll
the first photo of each identity and are scored by the same code
(:func:`rap_edge.pipeline.evaluate`). Needs the ``export`` extra (dlib-bin) for the baseline.

Example:
    python -m calibration.labelled --out /tmp/labelled
    python bench/eval_faces.py --labelled /tmp/labelled
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from rap_edge.app import Session, Settings
from rap_edge.models import CARRIERS, ModelStore
from rap_edge.pipeline import (
    DEFAULT_MARGIN,
    EvalReport,
    LabelledSet,
    PipelineConfig,
    PipelineRecognizer,
    evaluate,
)

DLIB_DISTANCE = 0.6


class TextbookRecognizer:
    """dlib HOG + 5-point landmarks + ResNet descriptor, nearest neighbour under 0.6."""

    def __init__(self, store: ModelStore) -> None:
        import dlib

        self.hog = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(
            str(store.file("dlib-face", "shape_predictor_5_face_landmarks.dat"))
        )
        self.net = dlib.face_recognition_model_v1(
            str(store.file("dlib-face", "dlib_face_recognition_resnet_model_v1.dat"))
        )
        self.names: list[str] = []
        self.vectors = np.zeros((0, 128), np.float32)

    def _faces(self, photo: Path) -> list[np.ndarray]:
        bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if bgr is None:
            from rap_edge.errors import InvalidInputError

            msg = f"{photo}: cannot read"
            raise InvalidInputError(msg)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        boxes = sorted(self.hog(rgb, 1), key=lambda b: -b.area())
        return [
            np.asarray(self.net.compute_face_descriptor(rgb, self.shape(rgb, b)), dtype=np.float32)
            for b in boxes
        ]

    def enroll(self, identities: dict[str, list[Path]]) -> None:
        names, vecs = [], []
        for name, photos in identities.items():
            for p in photos:
                faces = self._faces(p)
                if faces:  # the largest face; none found: this photo enrolls nothing
                    names.append(name)
                    vecs.append(faces[0])
        self.names = names
        self.vectors = np.array(vecs, dtype=np.float32).reshape(-1, 128)

    def recognize(self, photo: Path) -> list[str]:
        out = []
        for v in self._faces(photo):
            if not len(self.vectors):
                out.append("unknown")
                continue
            d = np.linalg.norm(self.vectors - v, axis=1)
            i = int(np.argmin(d))
            out.append(self.names[i] if d[i] < DLIB_DISTANCE else "unknown")
        return out


#: The close-up condition: the photo cropped to the face box's middle rows (forehead and chin
#: cut off) and a little wider than the box, then scaled to 480 px high: a face that fills the
#: frame, as someone walking up to a robot's camera shows it.
CLOSEUP_ROWS = (0.15, 0.85)
CLOSEUP_COLS = (-0.08, 1.08)
CLOSEUP_HEIGHT = 480


def closeup_condition(labelled: LabelledSet, out: Path) -> LabelledSet:
    """Write the close-up copy of every photo (pinned face boxes in provenance.json) to ``out``."""
    prov = json.loads((labelled.root / "provenance.json").read_text())["files"]
    for rel, rec in prov.items():
        img = cv2.imread(str(labelled.root / rel))
        if img is None or not rec.get("face_box"):
            continue
        x, y, w, h = rec["face_box"]
        y1, y2 = int(y + CLOSEUP_ROWS[0] * h), int(y + CLOSEUP_ROWS[1] * h)
        x1, x2 = int(x + CLOSEUP_COLS[0] * w), int(x + CLOSEUP_COLS[1] * w)
        crop = img[max(0, y1) : y2, max(0, x1) : x2]
        scale = CLOSEUP_HEIGHT / crop.shape[0]
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), CLOSEUP_HEIGHT))
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return LabelledSet.load(out)


def _f(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelled", required=True, help="labelled folder (with conditions/)")
    parser.add_argument("--models", default=None, help="exported models (default <store>/onnx)")
    parser.add_argument("--face-encoder", default="dlib_resnet.json")
    parser.add_argument(
        "--thresholds", default=None, help="threshold file (default: as `rap-edge eval`)"
    )
    parser.add_argument("--conditions", default="all", help="all, none or a comma list")
    parser.add_argument(
        "--tiles",
        type=int,
        default=1,
        help="rap-edge's tiled detection for small faces (default 1: off)",
    )
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    parser.add_argument("--no-flip", action="store_true", help="no mirror averaging")
    parser.add_argument("--no-textbook", action="store_true", help="skip the dlib baseline")
    parser.add_argument("--out", default="bench/results/eval_faces.json")
    args = parser.parse_args()
    labelled = LabelledSet.load(args.labelled)
    store = ModelStore(None, carriers=[c for c in CARRIERS if c.key == "dlib-face"])
    store.pull()
    # The application session loads the models and finds the thresholds, as `rap-edge run`.
    settings = Settings(
        models=args.models,
        face_encoder=args.face_encoder,
        provider="cpu",
        flip=not args.no_flip,
        thresholds=args.thresholds,
        margin=args.margin,
    )
    session = Session.open(settings, memory="none", embed=False)
    models, thresholds = session.models, session.thresholds
    ours = PipelineRecognizer(
        models, thresholds=thresholds, config=PipelineConfig(margin=args.margin, tiles=args.tiles)
    )
    textbook = None if args.no_textbook else TextbookRecognizer(store)
    sets: dict[str, list[tuple[Path, str | None]] | None] = {"clean": None}
    wanted = None if args.conditions == "all" else set(args.conditions.split(","))
    if args.conditions != "none":
        conds = labelled.conditions()
        if wanted is None or "closeup" in wanted:
            tmp = tempfile.mkdtemp(prefix="rap-edge-closeup-")
            conds["closeup"] = closeup_condition(labelled, Path(tmp))
        for name, cond in conds.items():
            if wanted is None or name in wanted:
                sets[name] = cond.tests_like(labelled, 1)
    results: dict[str, dict[str, Any]] = {}
    for name, tests in sets.items():
        row: dict[str, Any] = {}
        for label, rec in (("rap-edge", ours), ("textbook", textbook)):
            if rec is None:
                continue
            t = time.perf_counter()
            rep: EvalReport = evaluate(
                rec,
                labelled,
                tests=tests,
                progress=functools.partial(
                    tqdm, desc=f"{name} {label}", leave=False, disable=None
                ),
            )
            row[label] = {**rep.to_json(), "seconds": time.perf_counter() - t}
        results[name] = row
        print(f"done: {name}", file=sys.stderr, flush=True)
    enc = models.encoder_id
    print(
        f"\n{len(labelled.identities)} identities, 1 enrollment photo each; rap-edge "
        f"threshold {thresholds.get(enc):.4f} ({thresholds.source(enc)}), margin "
        f"{thresholds.margin}, tiles {args.tiles}; textbook: dlib HOG + 5-point + "
        "descriptor, distance < 0.6\n"
    )
    print(
        "| condition | test photos | distractors | rap-edge precision | rap-edge recall | "
        "rap-edge distractors rejected | textbook precision | textbook recall | "
        "textbook distractors rejected |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        a, b = row["rap-edge"], row.get("textbook", {})
        print(
            f"| {name} | {a['tests'] - a['distractors']} | {a['distractors']} | "
            f"{_f(a['precision'])} | {_f(a['recall'])} | {_f(a['distractor_rejection'])} | "
            f"{_f(b.get('precision'))} | {_f(b.get('recall'))} | "
            f"{_f(b.get('distractor_rejection'))} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean = json.loads(json.dumps(results, default=str).replace("NaN", "null"))
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "labelled": str(labelled.root),
                "encoder": enc,
                "threshold": thresholds.get(enc),
                "threshold_source": thresholds.source(enc),
                "margin": thresholds.margin,
                "tiles": args.tiles,
                "results": clean,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
