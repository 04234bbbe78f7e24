"""Pull the pinned weights and export every model that is missing or stale (``make models``).

A model whose manifest exists and whose file matches the manifest's hash is left alone, so a
second run takes seconds. Order matters: the landmark model's box map needs the detector. Last
comes the LLM for descriptions (SmolLM2-135M, GGUF -> ORT GenAI INT4, about a minute; see
``export/llm.py``); ``--no-llm`` skips it. The NanoDet object detector (npm carrier, converted
by tf2onnx in an isolated venv, parity against TF.js under Node; ``export/nanodet.py``) is
skipped with a message when npm, node or the export venv cannot be had; ``--no-detector``
skips it on purpose.

Usage:
    python -m export.all [--store DIR] [--force] [--no-llm]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from export import (
    centernet,
    dlib_landmarks,
    dlib_resnet,
    llm,
    mobilenetv2,
    nanodet,
    quantize,
    res10_ssd,
)
from export._common import check_photos
from rap_edge.app import THRESHOLDS_FILE
from rap_edge.errors import RapEdgeError
from rap_edge.models import ModelStore, load_manifest, sha256_file
from rap_edge.pipeline import REPO_THRESHOLDS

if TYPE_CHECKING:
    from pathlib import Path

_EXPORTS = (
    ("res10_ssd", res10_ssd),
    ("dlib_shape_5", dlib_landmarks),
    ("dlib_resnet", dlib_resnet),
    ("mobilenetv2", mobilenetv2),
)
_QUANTIZED = ("dlib_resnet", "mobilenetv2")


def _current(path: object) -> bool:
    try:
        m = load_manifest(path)  # type: ignore[arg-type]
    except RapEdgeError:
        return False
    return m.onnx.is_file() and sha256_file(m.onnx) == m.onnx_sha256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    parser.add_argument("--force", action="store_true", help="export everything again")
    parser.add_argument(
        "--no-llm",
        action="store_true",
        help="skip the LLM (descriptions then use the template backend)",
    )
    parser.add_argument(
        "--no-detector", action="store_true", help="skip the NanoDet object detector"
    )
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    store.pull([c for c in store.carriers if store.carriers[c].registry == "pypi"], say=print)
    photos = check_photos(args.store, say=print)
    out = store.path / "onnx"
    for stem, module in _EXPORTS:
        if not args.force and _current(out / f"{stem}.json"):
            print(f"{stem}: up to date")
            continue
        print(f"{stem}: exporting ...", flush=True)
        m = module.export(store, out, photos=photos)
        print(f"{stem}: wrote {m.onnx.name}")
    for stem in _QUANTIZED:
        variants = [out / f"{stem}.int8-{v}.json" for v in ("dynamic", "qdq")]
        if not args.force and all(_current(v) for v in variants):
            print(f"{stem} INT8: up to date")
            continue
        print(f"{stem} INT8: quantizing ...", flush=True)
        quantize.main(
            ["--manifest", str(out / f"{stem}.json")]
            + ([] if args.store is None else ["--store", args.store])
        )
    if not args.no_detector:
        _detector(store, out, photos, force=args.force)
    install_thresholds(out)
    if not args.no_llm:
        genai_dir = llm.default_dirs(store)[1]
        if not args.force and llm.current(genai_dir):
            print(f"{genai_dir.name}: up to date")
        else:
            print(f"{genai_dir.name}: converting and building (about a minute) ...", flush=True)
            try:
                llm.export_default(store, say=print)
            except RapEdgeError as err:
                print(f"{genai_dir.name}: FAILED: {err}", file=sys.stderr)
                return 1
            print(f"{genai_dir.name}: wrote {genai_dir}")
    return 0


def _detector(store: ModelStore, out: Path, photos: list[Path], *, force: bool) -> None:
    """Pull and convert NanoDet and CenterNet, each skipped with a message if it fails.

    Without npm or the export venv both are skipped; if one fails, the other still serves.
    """
    for mod in (nanodet, centernet):
        if not force and _current(out / f"{mod.STEM}.json"):
            print(f"{mod.STEM}: up to date")
            continue
        print(
            f"{mod.STEM}: pulling (npm), converting (tf2onnx), parity with TF.js ...", flush=True
        )
        try:
            store.pull([mod.CARRIER], say=print)
            m = mod.export(store, out, photos=photos, say=print)
        except RapEdgeError as err:
            print(f"{mod.STEM}: SKIPPED ({err})", file=sys.stderr)
            continue
        print(f"{mod.STEM}: wrote {m.onnx.name} (parity: {m.parity['matched']} detections)")


def install_thresholds(out: Path) -> None:
    """Put the repository's calibrated thresholds beside the models they were measured on.

    Every command finds ``<models>/thresholds.json`` wherever it runs (never the working
    directory). Only encoders the store's file lacks are added: a file the user calibrated
    with ``rap-edge calibrate thresholds`` keeps its own values.
    """
    if not REPO_THRESHOLDS.is_file():
        return
    repo = json.loads(REPO_THRESHOLDS.read_text(encoding="utf-8"))
    target = out / THRESHOLDS_FILE
    data = {"version": repo.get("version", 1), "encoders": {}}
    if target.is_file():
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except ValueError:
            print(f"{target}: not JSON; replaced by the calibrated thresholds", file=sys.stderr)
    added = [k for k in repo.get("encoders", {}) if k not in data.setdefault("encoders", {})]
    if not added:
        print(f"{THRESHOLDS_FILE}: up to date")
        return
    for key in added:
        data["encoders"][key] = repo["encoders"][key]
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(target)
    print(f"{THRESHOLDS_FILE}: installed calibrated thresholds for {', '.join(added)}")


if __name__ == "__main__":
    sys.exit(main())
