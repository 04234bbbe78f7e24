"""Export dlib's face recognition ResNet (128-d descriptor) to ONNX, with parity against dlib.

Weights: ``dlib_face_recognition_resnet_model_v1.dat`` from the pinned
``face-recognition-models==0.3.0`` sdist (CC0). The file is read here by a pure-numpy parser of
dlib's serialization format (no dlib needed to convert), walked with the layer stack of dlib's
face recognition example network: a 7x7 stem, max pool, 14 residual blocks (four of them
downsampling), a global average and a 128-d fully connected layer without bias. The network is
rebuilt in plain torch, including dlib's ``add_prev`` rule (the smaller input is zero-padded:
extra channels, bottom rows, right columns), exported with the dynamo exporter, and checked
against dlib itself (``dlib-bin``'s ``compute_face_descriptor``) on aligned face chips cut from
real photos by dlib's HOG detector, 5-point landmark model and ``get_face_chip``. The ONNX file
is run through rap-edge's manifest-driven :class:`Encoder`, so the check covers the runtime's
preprocessing as well as the conversion.

Usage:
    python -m export.dlib_resnet [--store DIR] [--out DIR]   # pulls the weights if needed
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
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

NAME = "dlib-resnet-v1"
CARRIER = "dlib-face"
WEIGHTS = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS = "shape_predictor_5_face_landmarks.dat"
DIM = 128
SIZE = 150
CHIP_PADDING = 0.25
PIXEL_MEAN = (122.782, 117.001, 104.298)  # RGB, as stored in the file's input layer
MIN_COSINE = 0.9999
# dlib's rule is "same person" when the Euclidean distance of two descriptors is below 0.6.
# For vectors of norms a and b, |x - y|^2 = a^2 + b^2 - 2ab cos, so with a ~= b ~= r the rule
# reads cos > 1 - 0.6^2 / (2 r^2). MODELS.md quotes norms of about 1.46; dlib's own descriptors of
# the eight check chips (four photos, each chip also mirrored) measured 1.364-1.400, mean 1.385
# (the export records the mean in the parity dict), so r = 1.385: 1 - 0.36 / 3.8365 = 0.906.
# (r = 1.46 would give 0.916.) On those chips the same person scored cosine >= 0.95 and different
# people <= 0.825, so either point separates them.
DLIB_DISTANCE = 0.6
TYPICAL_NORM = 1.385
THRESHOLD = round(1 - DLIB_DISTANCE**2 / (2 * TYPICAL_NORM**2), 4)

# The network of dlib's dnn_face_recognition_ex.cpp, from the input outwards: residual blocks as
# (filters, downsampling).
_BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, False),
    (32, False),
    (32, False),
    (64, True),
    (64, False),
    (64, False),
    (64, False),
    (128, True),
    (128, False),
    (128, False),
    (256, True),
    (256, False),
    (256, False),
    (256, True),
)


# --------------------------------------------------------------------------- the .dat file


@dataclass(frozen=True)
class Layer:
    """One entry of the layer stack: its kind and the settings the file must agree with."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc, tag, skip
    args: tuple[int, ...] = ()


def layer_stack() -> list[Layer]:
    """The example network's layers from the input outwards (tags and skips included)."""
    stack = [
        Layer("con", (32, 7, 7, 2)),
        Layer("affine"),
        Layer("relu"),
        Layer("max_pool", (3, 3, 2)),
    ]
    for filters, down in _BLOCKS:
        stride = 2 if down else 1
        stack += [
            Layer("tag", (1,)),
            Layer("con", (filters, 3, 3, stride)),
            Layer("affine"),
            Layer("relu"),
            Layer("con", (filters, 3, 3, 1)),
            Layer("affine"),
        ]
        if down:
            stack += [Layer("tag", (2,)), Layer("skip", (1,)), Layer("avg_pool", (2, 2, 2))]
        stack += [Layer("add_prev", (2 if down else 1,)), Layer("relu")]
    stack += [Layer("avg_pool", (0, 0, 1)), Layer("fc", (DIM,))]
    return stack


@dataclass
class DlibResnetWeights:
    """Tensors of the network, in order from the input outwards.

    Attributes:
        convs: (weight [out, in, kh, kw], bias [out]) per convolution.
        affines: (gamma [C], beta [C]) per affine layer (dlib's folded batch norm).
        fc: The final layer's matrix, [256, 128]: descriptor = features @ fc.
        pixel_mean: The input layer's RGB means (pixel - mean) / 256.
        size: The input layer's chip size.
        loss: The metric loss's settings (``margin``, ``distance_threshold``).
        counts: How many layers of each kind the file held.
        bytes_read: How many bytes the parser consumed (the whole file).
    """

    convs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    affines: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    fc: np.ndarray | None = None
    pixel_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    size: int = 0
    loss: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0


class DlibFormatError(ValueError):
    """The file does not follow dlib's serialization of the expected network."""


class _Reader:
    """dlib's serializer, the parts this file uses."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            msg = f"unexpected end of file at byte {self.pos} (wanted {n} more)"
            raise DlibFormatError(msg)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def read_int(self) -> int:
        # A control byte: low 4 bits = number of magnitude bytes, 0x80 = negative.
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:  # noqa: PLR2004
            msg = f"bad integer control byte 0x{control:02x} at byte {self.pos - 1}"
            raise DlibFormatError(msg)
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def read_str(self) -> str:
        return self._take(self.read_int()).decode("ascii")

    def read_float(self) -> float:
        mantissa = self.read_int()
        exponent = self.read_int()
        return math.ldexp(mantissa, exponent)

    def read_bool(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            msg = f"bad bool {char!r} at byte {self.pos - 1}"
            raise DlibFormatError(msg)
        return char == b"1"

    def tensor(self) -> np.ndarray:
        self.expect_int(2, "tensor version")
        shape = tuple(self.read_int() for _ in range(4))
        count = math.prod(shape)
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        self.expect_int(1, "alias_tensor version")
        return tuple(self.read_int() for _ in range(4))

    def expect_int(self, want: int, what: str) -> None:
        at = self.pos
        got = self.read_int()
        if got != want:
            msg = f"{what}: expected {want}, found {got} at byte {at}"
            raise DlibFormatError(msg)

    def expect_str(self, want: str) -> None:
        at = self.pos
        got = self.read_str()
        if got != want:
            msg = f"expected layer {want!r}, found {got!r} at byte {at}"
            raise DlibFormatError(msg)


def _read_pool(r: _Reader, layer: Layer, name: str) -> None:
    r.expect_str(name)
    nr, nc, stride = layer.args
    for want, what in (
        (nr, "pool rows"),
        (nc, "pool columns"),
        (stride, "pool stride y"),
        (stride, "pool stride x"),
        (0, "pool padding y"),
        (0, "pool padding x"),
    ):
        r.expect_int(want, what)


def _read_details(r: _Reader, layer: Layer, out: DlibResnetWeights) -> None:
    """One layer's own serialization (what dlib calls its details)."""
    if layer.kind == "con":
        r.expect_str("con_4")
        params = r.tensor().reshape(-1)
        filters, nr, nc, stride = layer.args
        r.expect_int(filters, "con filters")
        r.expect_int(nr, "con rows")
        r.expect_int(nc, "con columns")
        r.expect_int(stride, "con stride y")
        r.expect_int(stride, "con stride x")
        pad = 0 if stride != 1 else nr // 2  # dlib's default padding
        r.expect_int(pad, "con padding y")
        r.expect_int(pad, "con padding x")
        wshape = r.alias()
        bshape = r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.read_float()
        nw = math.prod(wshape)
        if wshape[0] != filters or bshape != (1, filters, 1, 1) or params.size != nw + filters:
            msg = f"con_4 shapes {wshape} {bshape} do not fit {params.size} parameters"
            raise DlibFormatError(msg)
        out.convs.append((params[:nw].reshape(wshape).copy(), params[nw:].copy()))
    elif layer.kind == "affine":
        r.expect_str("affine_")
        params = r.tensor().reshape(-1)
        gshape = r.alias()
        bshape = r.alias()
        r.expect_int(0, "affine mode (CONV_MODE)")
        c = gshape[1]
        if gshape != bshape or gshape != (1, c, 1, 1) or params.size != 2 * c:
            msg = f"affine_ shapes {gshape} {bshape} do not fit {params.size} parameters"
            raise DlibFormatError(msg)
        out.affines.append((params[:c].copy(), params[c:].copy()))
    elif layer.kind == "relu":
        r.expect_str("relu_")
    elif layer.kind == "max_pool":
        _read_pool(r, layer, "max_pool_2")
    elif layer.kind == "avg_pool":
        _read_pool(r, layer, "avg_pool_2")
    elif layer.kind == "add_prev":
        r.expect_str("add_prev_")
    elif layer.kind == "fc":
        r.expect_str("fc_2")
        r.expect_int(layer.args[0], "fc outputs")
        inputs = r.read_int()
        params = r.tensor()
        wshape = r.alias()
        bshape = r.alias()
        r.expect_int(1, "fc bias mode (FC_NO_BIAS)")
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.read_float()
        if (
            params.size != inputs * layer.args[0]
            or wshape != (inputs, layer.args[0], 1, 1)
            or bshape != (0, 0, 0, 0)
        ):
            msg = f"fc_2 weights {wshape} / {params.shape} do not fit {inputs}x{layer.args[0]}"
            raise DlibFormatError(msg)
        out.fc = params.reshape(inputs, layer.args[0]).copy()
    else:  # pragma: no cover - the stack only holds the kinds above
        msg = f"unknown layer kind {layer.kind}"
        raise DlibFormatError(msg)
    out.counts[layer.kind] = out.counts.get(layer.kind, 0) + 1


def parse_dat(path: Path) -> DlibResnetWeights:
    """Read the whole ``.dat`` file into numpy tensors, checking it against :func:`layer_stack`.

    Raises:
        DlibFormatError: if the file departs from the expected network anywhere, or if any byte
            is left over at the end.
    """
    r = _Reader(path.read_bytes())
    out = DlibResnetWeights()
    # The loss layer wrapper: its version, the loss's own settings, then the network.
    r.expect_int(1, "loss wrapper version")
    r.expect_str("loss_metric_2")
    out.loss = {"margin": r.read_float(), "distance_threshold": r.read_float()}
    stack = layer_stack()
    # Every wrapper writes its version before its subnetwork, so they come outer to inner:
    # 2 for a layer, 1 for a tag or skip, 3 for the layer that holds the input layer.
    for i, layer in enumerate(reversed(stack)):
        want = 1 if layer.kind in ("tag", "skip") else 3 if i == len(stack) - 1 else 2
        r.expect_int(want, f"wrapper version of {layer.kind} #{len(stack) - 1 - i}")
    r.expect_str("input_rgb_image_sized")
    mean = (r.read_float(), r.read_float(), r.read_float())
    out.pixel_mean = (
        float(np.float32(mean[0])),
        float(np.float32(mean[1])),
        float(np.float32(mean[2])),
    )
    rows, cols = r.read_int(), r.read_int()
    if rows != cols:
        msg = f"input layer is {rows}x{cols}, expected a square chip"
        raise DlibFormatError(msg)
    out.size = rows
    for i, layer in enumerate(stack):
        if layer.kind in ("tag", "skip"):
            out.counts[layer.kind] = out.counts.get(layer.kind, 0) + 1
            continue  # a tag or skip writes nothing after its subnetwork
        _read_details(r, layer, out)
        for _ in range(3):  # setup called, gradient stale, output disabled
            r.read_bool()
        for _ in range(3):  # x_grad, cached output, params_grad (kept empty in a saved net)
            r.tensor()
        if i == 0:
            r.read_int()  # the innermost wrapper's sample expansion factor
    out.bytes_read = r.pos
    if r.pos != len(r.data):
        msg = f"{path}: {len(r.data) - r.pos} bytes left after the last layer"
        raise DlibFormatError(msg)
    return out


# --------------------------------------------------------------------------- the torch rebuild


class _Affine(nn.Module):
    """dlib's ``affine_`` (a batch norm folded into a per-channel scale and shift)."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray) -> None:
        super().__init__()
        self.gamma: torch.Tensor
        self.beta: torch.Tensor
        self.register_buffer("gamma", torch.from_numpy(gamma).reshape(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(beta).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def _conv(weight: np.ndarray, bias: np.ndarray, stride: int) -> nn.Conv2d:
    out_ch, in_ch, kh, _ = weight.shape
    # dlib's default padding: 0 for a strided convolution, half the kernel otherwise.
    conv = nn.Conv2d(in_ch, out_ch, kh, stride, 0 if stride != 1 else kh // 2)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        assert conv.bias is not None  # noqa: S101 - Conv2d has a bias by default
        conv.bias.copy_(torch.from_numpy(bias))
    return conv


def _add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Add as dlib's ``add_prev`` does: over the larger shape, the smaller input zero-padded.

    Only the batch dimension is dynamic in the export; channels, rows and columns are static, so
    the pads are constants in the graph.
    """
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(x: torch.Tensor) -> torch.Tensor:
        dc, dh, dw = c - x.shape[1], h - x.shape[2], w - x.shape[3]
        if dc == dh == dw == 0:
            return x
        # F.pad lists (left, right) pairs from the last dimension: columns, rows, channels.
        return F.pad(x, (0, dw, 0, dh, 0, dc))

    return pad(a) + pad(b)


class _Block(nn.Module):
    """dlib's ``ares`` / ``ares_down``: relu(add_prev(block(x), x or avg_pool(x)))."""

    def __init__(
        self,
        convs: Sequence[tuple[np.ndarray, np.ndarray]],
        affines: Sequence[tuple[np.ndarray, np.ndarray]],
        down: bool,
    ) -> None:
        super().__init__()
        stride = 2 if down else 1
        self.down = down
        self.conv1 = _conv(*convs[0], stride)
        self.bn1 = _Affine(*affines[0])
        self.conv2 = _conv(*convs[1], 1)
        self.bn2 = _Affine(*affines[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return torch.relu(_add_prev(y, shortcut))


class DlibResnet(nn.Module):
    """dlib's face recognition ResNet: [N,3,150,150] (RGB, (pixel-mean)/256) -> [N,128]."""

    def __init__(self, weights: DlibResnetWeights) -> None:
        super().__init__()
        if weights.fc is None or len(weights.convs) != 1 + 2 * len(_BLOCKS):
            msg = "incomplete weights"
            raise DlibFormatError(msg)
        self.conv = _conv(*weights.convs[0], 2)
        self.bn = _Affine(*weights.affines[0])
        self.blocks = nn.ModuleList(
            _Block(
                weights.convs[1 + 2 * i : 3 + 2 * i], weights.affines[1 + 2 * i : 3 + 2 * i], down
            )
            for i, (_, down) in enumerate(_BLOCKS)
        )
        self.fc: torch.Tensor
        self.register_buffer("fc", torch.from_numpy(weights.fc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.bn(self.conv(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        # avg_pool_everything: the last block's 2x2 map (its residual branch filled only the
        # top-left cell; the rest is the zero-padded shortcut), averaged whole.
        return x.mean(dim=(2, 3)) @ self.fc


def load_reference(weights: Path) -> DlibResnet:
    """The network with the file's weights, in eval mode."""
    return DlibResnet(parse_dat(weights)).eval()


# --------------------------------------------------------------------------- dlib, the reference


def face_chips(photos: Sequence[Path], landmarks: Path) -> list[tuple[str, np.ndarray]]:
    """Aligned RGB chips cut by dlib (HOG detector, 5-point landmarks, ``get_face_chip``).

    Each chip is also returned mirrored (another real input to compare on), named
    ``<photo stem>#<face>`` and ``<photo stem>#<face>m``.
    """
    import cv2
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(landmarks))
    chips: list[tuple[str, np.ndarray]] = []
    for path in photos:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            msg = f"{path}: cannot read the check photo"
            raise RuntimeError(msg)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        for i, box in enumerate(detector(rgb, 1)):
            chip = dlib.get_face_chip(rgb, predictor(rgb, box), size=SIZE, padding=CHIP_PADDING)
            chips.append((f"{path.stem}#{i}", np.asarray(chip)))
            chips.append((f"{path.stem}#{i}m", np.ascontiguousarray(np.asarray(chip)[:, ::-1])))
    return chips


def dlib_descriptors(weights: Path, chips: Sequence[np.ndarray]) -> np.ndarray:
    """Descriptors of RGB chips by dlib itself (``face_recognition_model_v1``)."""
    import dlib

    model = dlib.face_recognition_model_v1(str(weights))
    return np.array(
        [np.asarray(model.compute_face_descriptor(c)) for c in chips], dtype=np.float32
    )


def preprocess_spec(pixel_mean: Sequence[float] = PIXEL_MEAN) -> Preprocess:
    """Rap-edge preprocessing equal to dlib's input: (pixel - mean) / 256 on RGB, 150x150."""
    mean = (pixel_mean[0] / 256, pixel_mean[1] / 256, pixel_mean[2] / 256)
    return Preprocess(
        height=SIZE, width=SIZE, color="RGB", scale=1 / 256, mean=mean, std=(1.0, 1.0, 1.0)
    )


# --------------------------------------------------------------------------- export


def check(manifest: ModelManifest, store: ModelStore, *, photos: Sequence[Path]) -> dict[str, Any]:
    """Parity of the exported model with dlib itself on dlib's chips of the check photos.

    Raises:
        RuntimeError: if no face is found in the photos.
    """
    named = face_chips(photos, store.file(CARRIER, LANDMARKS))
    if not named:
        msg = "no face found in the check photos"
        raise RuntimeError(msg)
    chips = [c for _, c in named]
    want = dlib_descriptors(store.file(CARRIER, WEIGHTS), chips)
    # The Encoder takes BGR images; the chips are already 150x150, so its resize is identity.
    got = Encoder(manifest, provider="cpu").embed(
        [np.ascontiguousarray(c[:, :, ::-1]) for c in chips]
    )
    cos = cosine_rows(got, want)
    return {
        "reference": "dlib face_recognition_model_v1.compute_face_descriptor "
        f"(dlib {_dlib_version()})",
        "runtime": "onnxruntime CPU through rap_edge.models.Encoder",
        "chips": len(chips),
        "chip_source": "dlib HOG detector, shape_predictor_5_face_landmarks, "
        f"get_face_chip(size={SIZE}, padding={CHIP_PADDING}), and mirrored",
        "min_cosine": float(cos.min()),
        "max_abs_diff": float(np.abs(got - want).max()),
        "mean_norm": float(np.linalg.norm(want, axis=1).mean()),
        "required_min_cosine": MIN_COSINE,
        "ok": bool(cos.min() >= MIN_COSINE),
    }


def export(store: ModelStore, out_dir: Path, *, photos: Sequence[Path]) -> ModelManifest:
    """Export to ``out_dir/dlib_resnet.onnx`` + manifest; refuse to write it without parity.

    Raises:
        RuntimeError: if no face is found in the photos, or parity against dlib is below
            :data:`MIN_COSINE`.
    """
    weights = store.file(CARRIER, WEIGHTS)
    parsed = parse_dat(weights)
    if parsed.size != SIZE or not np.allclose(parsed.pixel_mean, PIXEL_MEAN, atol=1e-3):
        msg = f"{weights}: input layer {parsed.size}px, means {parsed.pixel_mean}"
        raise DlibFormatError(msg)
    model = DlibResnet(parsed).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "dlib_resnet.onnx"
    digest = export_onnx(model, onnx_path, size=SIZE, output_names=["embedding"])
    weights_sha, provenance = weights_provenance(store, CARRIER, weights)
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
        preprocess=preprocess_spec(),
        provenance=provenance,
    )
    parity = check(manifest, store, photos=photos)
    if not parity["ok"]:
        onnx_path.unlink()
        msg = (
            f"parity failed: min cosine {parity['min_cosine']:.6f} < {MIN_COSINE} over "
            f"{parity['chips']} chips"
        )
        raise RuntimeError(msg)
    manifest = replace(manifest, parity=parity)
    write_manifest(manifest, out_dir / "dlib_resnet.json")
    return manifest


def _dlib_version() -> str:
    import dlib

    return str(getattr(dlib, "__version__", "unknown"))


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, doc=__doc__ or "", carrier="dlib-face", export=export)


if __name__ == "__main__":
    sys.exit(main())
