"""Re-run the parity checks of every exported model against its reference runtime.

For each manifest in ``<store>/onnx``: the model file's SHA-256 against the manifest, then the
same check its exporter ran, on the same real check photos:

* ``res10-ssd-face``: OpenCV DNN's Caffe importer (faces matched, box IoU, score difference);
* ``dlib-resnet-v1``: dlib's own descriptor on dlib's chips (cosine);
* ``dlib-shape-5``: dlib's shape predictor on dlib's boxes (landmarks to the pixel);
* ``mobilenetv2-imagenet``: torch eager (cosine);
* INT8 variants: their fp32 model (cosine, nearest-neighbour changes), which must reproduce
  what the export recorded.

Every model is checked, whatever happens to the others, and each row gets a status: 0 passed,
1 the check ran and failed (a file that differs from its manifest, parity out of tolerance),
2 it could not run (a missing model file, an unreadable manifest, a missing reference, an
error). Prints a table (or ``--json``, one object per model) and exits with the worst status.
``rap-edge models verify`` runs this when the source checkout and the ``export`` extra are
present.

Usage:
    python -m export.verify [--store DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path  # noqa: TC003 - used at run time in annotations' values
from typing import Any

from export._common import check_photos
from rap_edge.errors import RapEdgeError
from rap_edge.models import ModelManifest, ModelStore, load_manifest, manifest_paths, sha256_file


def _check_one(
    m: ModelManifest,
    store: ModelStore,
    photos: list[Path] | RapEdgeError,
    fp32: dict[str, ModelManifest],
) -> dict[str, Any]:
    if isinstance(photos, RapEdgeError):  # the check photos could not be found
        raise photos
    from export import (
        centernet,
        dlib_landmarks,
        dlib_resnet,
        hf_encoder,
        mobilenetv2,
        nanodet,
        quantize,
        res10_ssd,
    )

    quant = str(m.parity.get("quantization", ""))
    if quant:
        base = fp32.get(m.name.rsplit("-int8-", 1)[0])
        if base is None:
            return {"ok": False, "error": "its fp32 model is not exported"}
        # On the images its accuracy was recorded on (a user's set for `export encoder`).
        evaluation = str(m.parity.get("evaluation_set") or "check-photos")
        crops = quantize.crops_of(hf_encoder.load_calibration(evaluation, store))
        return quantize.check(m, base, evaluation=crops)
    if m.provenance.get("source") == hf_encoder.SOURCE:
        return hf_encoder.check(m)
    if m.name == res10_ssd.NAME:
        return res10_ssd.check(m, store, photos=photos)
    if m.name == dlib_resnet.NAME:
        return dlib_resnet.check(m, store, photos=photos)
    if m.name == mobilenetv2.NAME:
        return mobilenetv2.check(m, store, photos=photos)
    if m.name == nanodet.NAME:  # TF.js under Node; about 3 minutes on 2 cores
        return nanodet.check(m, store, photos=photos)
    if m.name == centernet.NAME:  # TF.js under Node; about a minute on 2 cores
        return centernet.check(m, store, photos=photos)
    if m.name == dlib_landmarks.NAME:
        return dlib_landmarks.check(m, store, photos=photos)
    return {"ok": False, "error": f"no reference check for model {m.name!r}"}


def _summary(r: dict[str, Any]) -> str:
    if "min_cosine_to_fp32" in r:
        rec = r["recorded_min_cosine_to_fp32"]
        rec_s = f"{rec:.7f}" if isinstance(rec, (int, float)) else "none"
        return (
            f"min cosine to fp32 {r['min_cosine_to_fp32']:.7f} (recorded at export "
            f"{rec_s}), nearest-neighbour changes "
            f"{r['nearest_neighbour_changes']}/{r['crops']}"
        )
    if "min_cosine" in r:
        return f"min cosine {r['min_cosine']:.7f} (need >= {r.get('required_min_cosine')})"
    if "matched" in r:  # the COCO detectors (before "min_iou", which they also have)
        return (
            f"{r['matched']}/{r['reference_detections']} detections matched, min IoU "
            f"{r['min_iou']:.5f}, max score diff {r['max_score_diff']:.2g}"
        )
    if "min_iou" in r:
        return (
            f"{r['faces']}/{r['reference_faces']} faces, min IoU {r['min_iou']:.5f}, max "
            f"score diff {r['max_score_diff']:.2g}"
        )
    if "parity_exact_faces" in r:
        return (
            f"landmarks equal on {r['parity_exact_faces']} faces (max {r['parity_max_abs_px']} px)"
        )
    return str(r.get("error", ""))


def verify(store_dir: str | None) -> list[dict[str, Any]]:
    """Check every exported model; one row per manifest."""
    store = ModelStore(store_dir)
    folder = store.path / "onnx"
    manifests = manifest_paths(folder)
    if not manifests:
        msg = f"{folder}: no exported models (run `make models`)"
        raise SystemExit(msg)
    try:
        photos: list[Path] | RapEdgeError = check_photos(store_dir)
    except RapEdgeError as err:  # every parity check needs them; the hashes are still checked
        photos = err
    loaded: list[ModelManifest | tuple[Path, str]] = []
    for path in manifests:
        try:
            loaded.append(load_manifest(path))
        except RapEdgeError as err:
            loaded.append((path, str(err)))
    fp32 = {
        m.name: m
        for m in loaded
        if isinstance(m, ModelManifest) and not m.parity.get("quantization")
    }
    rows = []
    for m in loaded:
        if isinstance(m, tuple):
            rows.append(
                {"model": m[0].name, "hash": "unreadable", "ok": False, "status": 2, "check": m[1]}
            )
            continue
        rows.append(_row(m, store, photos, fp32))
    return rows


def _row(
    m: ModelManifest,
    store: ModelStore,
    photos: list[Path] | RapEdgeError,
    fp32: dict[str, ModelManifest],
) -> dict[str, Any]:
    """One model's row; an error in its check is its row's, never the others'."""
    row: dict[str, Any] = {"model": m.name, "file": m.onnx.name}
    try:
        if not m.onnx.is_file():
            row.update(hash="missing", ok=False, status=2, check="model file missing")
            return row
        if sha256_file(m.onnx) != m.onnx_sha256:
            row.update(
                hash="DIFFERS", ok=False, status=1, check="file does not match its manifest"
            )
            return row
        row["hash"] = "ok"
        result = _check_one(m, store, photos, fp32)
    except RapEdgeError as err:
        row.setdefault("hash", "?")
        row.update(ok=False, status=max(2, err.exit_code), check=f"could not check: {err}")
        return row
    except Exception as err:  # noqa: BLE001 - a reference runtime's failure is this row's
        row.setdefault("hash", "?")
        row.update(ok=False, status=2, check=f"could not check: {type(err).__name__}: {err}")
        return row
    ok = bool(result.get("ok"))
    row.update(ok=ok, status=0 if ok else 1, check=_summary(result), result=result)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    rows = verify(args.store)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    else:
        print(f"| {'model':<34} | hash | {'result':<6} | check |")
        print(f"|{'-' * 36}|------|--------|-------|")
        for r in rows:
            print(
                f"| {r['model']:<34} | {r['hash']} | {'ok' if r['ok'] else 'FAILED':<6} | "
                f"{r['check']} |"
            )
    return max((int(r["status"]) for r in rows), default=0)


if __name__ == "__main__":
    sys.exit(main())
