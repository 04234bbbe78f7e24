"""INT8 variants of an exported image embedder, with their accuracy against fp32.

Two variants per embedder:

* ``dynamic``: weights quantized to int8 ahead of time, activations at run time
  (``onnxruntime.quantization.quantize_dynamic``); needs no calibration data.
* ``qdq``: static quantization in QDQ format, activations calibrated (min/max, per-channel
  weights) on a calibration set described in ``calibration/sets/`` (images, never committed:
  the set names a carrier and files with their hashes).

Each variant gets its own manifest (its own encoder id: its vectors differ from fp32's) with the
accuracy measured on real crops: cosine to the fp32 vectors, and whether the nearest neighbour
of each crop among the others changes.

Usage:
    python -m export.quantize --manifest <store>/onnx/mobilenetv2.json [--set check-photos]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from rap_edge.models import (
    CARRIERS,
    CHECK_PHOTOS,
    Encoder,
    ModelManifest,
    ModelStore,
    load_manifest,
    preprocess,
    sha256_file,
    write_manifest,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

CALIBRATION_SETS = Path(__file__).resolve().parent.parent / "calibration" / "sets"


def load_set(name: str, store: ModelStore) -> list[np.ndarray]:
    """The images of a calibration set (BGR uint8), pulled and hash-checked via its carrier.

    ``name`` may also be a set collected by ``rap-edge calibrate collect`` (a folder with
    ``set.json``, or the name of one in ``calibration/sets/``), read by ``read_set``.
    """
    from rap_edge.calibsets import MANIFEST, read_set, set_path

    if (set_path(name) / MANIFEST).is_file():
        return read_set(name)
    spec_path = CALIBRATION_SETS / f"{name}.json"
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, ValueError) as err:
        msg = f"{spec_path}: not a readable calibration set ({err})"
        raise SystemExit(msg) from err
    carriers = {c.key: c for c in (*CARRIERS, CHECK_PHOTOS)}
    carrier = carriers[spec["carrier"]]
    source = ModelStore(store.path, carriers=[carrier])
    source.pull()
    images = []
    for name_ in spec["files"]:
        img = cv2.imread(str(source.file(carrier.key, name_)), cv2.IMREAD_COLOR)
        if img is None:
            msg = f"{name_}: unreadable calibration image"
            raise SystemExit(msg)
        images.append(img)
    return images


def crops_of(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Varied real crops: whole, centre, four quadrants, mirrored."""
    out: list[np.ndarray] = []
    for img in images:
        h, w = img.shape[:2]
        out += [img, img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4], img[:, ::-1].copy()]
        out += [img[y : y + h // 2, x : x + w // 2] for y in (0, h // 2) for x in (0, w // 2)]
    return out


class _Reader:
    """Feeds preprocessed calibration crops to the ORT calibrator, one at a time."""

    def __init__(self, manifest: ModelManifest, crops: Sequence[np.ndarray]) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {manifest.input_name: preprocess([c], manifest)} for c in crops
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _accuracy(fp32: np.ndarray, q: np.ndarray) -> dict[str, float]:
    unit = fp32 / np.linalg.norm(fp32, axis=1, keepdims=True)
    unit_q = q / np.linalg.norm(q, axis=1, keepdims=True)
    cos = (unit * unit_q).sum(1)
    sims, sims_q = unit @ unit.T, unit_q @ unit_q.T
    np.fill_diagonal(sims, -2)
    np.fill_diagonal(sims_q, -2)
    changed = int((sims.argmax(1) != sims_q.argmax(1)).sum())
    return {
        "crops": len(fp32),
        "min_cosine_to_fp32": float(cos.min()),
        "mean_cosine_to_fp32": float(cos.mean()),
        "nearest_neighbour_changes": changed,
    }


def check(
    variant: ModelManifest,
    fp32: ModelManifest,
    *,
    evaluation: Sequence[np.ndarray],
    tolerance: float = 1e-3,
) -> dict[str, Any]:
    """Accuracy of an INT8 variant against its fp32 model on ``evaluation`` crops.

    ``ok`` means the accuracy recorded in the variant's manifest at export is reproduced (min
    cosine no lower than recorded minus ``tolerance``): INT8 quality itself is a property of
    the model (MobileNetV2's variants are poor, see the README), not a verification failure.
    """
    reference = Encoder(fp32, provider="cpu").embed(list(evaluation))
    got = Encoder(variant, provider="cpu").embed(list(evaluation))
    accuracy = _accuracy(reference, got)
    recorded = variant.parity.get("min_cosine_to_fp32")
    ok = isinstance(recorded, (int, float)) and (
        accuracy["min_cosine_to_fp32"] >= float(recorded) - tolerance
    )
    return {
        "reference": f"fp32 model {fp32.onnx.name} ({fp32.encoder_id})",
        **accuracy,
        "recorded_min_cosine_to_fp32": recorded,
        "ok": ok,
    }


def quantize(
    manifest_path: Path,
    *,
    calibration: Sequence[np.ndarray],
    evaluation: Sequence[np.ndarray],
    variants: Sequence[str] = ("dynamic", "qdq"),
) -> list[ModelManifest]:
    """Write INT8 variants (``dynamic``, ``qdq`` or both) next to the fp32 model.

    Works for any image embedder with a manifest (``export.hf_encoder`` uses ``qdq`` alone).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = load_manifest(manifest_path)
    base = fp32.onnx.with_suffix("")
    reference = Encoder(fp32, provider="cpu").embed(list(evaluation))
    prepared = base.with_name(base.name + ".pre.onnx")
    quant_pre_process(str(fp32.onnx), str(prepared), skip_symbolic_shape=True)
    out = []
    unknown = set(variants) - {"dynamic", "qdq"}
    if unknown:
        msg = f"unknown INT8 variant(s) {sorted(unknown)}: expected dynamic and/or qdq"
        raise ValueError(msg)
    for variant in variants:
        path = base.with_name(f"{base.name}.int8-{variant}.onnx")
        if variant == "dynamic":
            quantize_dynamic(prepared, path, weight_type=QuantType.QInt8)
        else:
            quantize_static(
                prepared,
                path,
                _Reader(fp32, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        digest = sha256_file(path)
        encoder_id = fp32.encoder_id.replace("-fp32@", f"-int8{variant}@")
        manifest = replace(
            fp32,
            onnx=path,
            onnx_sha256=digest,
            encoder_id=encoder_id,
            name=f"{fp32.name}-int8-{variant}",
            parity={},
        )
        got = Encoder(manifest, provider="cpu").embed(list(evaluation))
        accuracy = _accuracy(reference, got)
        manifest = replace(
            manifest,
            parity={
                "reference": f"fp32 model {fp32.onnx.name} ({fp32.encoder_id})",
                "quantization": variant,
                "calibration_images": len(calibration) if variant == "qdq" else 0,
                **accuracy,
            },
        )
        write_manifest(manifest, path.with_suffix(".json"))
        out.append(manifest)
    prepared.unlink()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True, help="fp32 model manifest")
    parser.add_argument(
        "--set",
        default="check-photos",
        help="calibration set in calibration/sets/ (default check-photos)",
    )
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    args = parser.parse_args(argv)
    images = load_set(args.set, ModelStore(args.store))
    # Calibrate on half the photos' crops, evaluate on all (the set is small; say so).
    crops = crops_of(images)
    for m in quantize(args.manifest, calibration=crops[::2], evaluation=crops):
        print(f"wrote {m.onnx}: {m.parity}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
