"""Export an image encoder (and its text tower) from a local Hugging Face folder to ONNX.

Takes a CLIP, SigLIP or DINOv2 folder as ``save_pretrained`` writes it (``config.json``, the
weights, ``preprocessor_config.json``; for CLIP and SigLIP also the tokenizer); nothing is
downloaded. Writes into ``--out`` (default ``<model store>/onnx``), ``NAME`` being
``hf-<kind>-<folder name>``:

* ``NAME.onnx`` + ``NAME.json``: the fp32 image encoder, dynamic batch. Its output is the vector
  the model retrieves with: CLIP's projected ``image_embeds`` and SigLIP's pooled output (both
  ``get_image_features``), DINOv2's CLS token (``pooler_output``). The preprocessing in the
  manifest is read from the folder's image processor (``preprocessor_config.json`` plus the
  processor class's defaults), never hard-coded per model.
* ``NAME.text.onnx`` + ``NAME.text.json`` + ``NAME.tokenizer/tokenizer.json`` (CLIP, SigLIP; unless
  ``--no-text``): the text tower (``get_text_features``), task ``embed_text``, paired with the
  image encoder's ``encoder_id``: a text query is searched in that encoder's index.
* ``--precision fp16``: ``NAME.fp16.*`` (and ``NAME.text.fp16.*``), converted from fp32 with
  inputs and outputs kept fp32. ``--precision int8``: ``NAME.int8-qdq.*`` (static QDQ,
  calibrated on ``--calib``, see ``export.quantize``) and a dynamic-INT8 text tower
  ``NAME.text.int8-dynamic.*``. The fp32 files are always written: they are the variants'
  reference.

Checks, recorded in each manifest's ``parity`` (a failed fp32 or fp16 check deletes the files):
ONNX against torch eager on identical input tensors (min cosine 0.9999 for fp32, 0.999 for
fp16; image and text), the end-to-end figure (rap-edge's OpenCV preprocessing plus ONNX against
the Hugging Face PIL image processor plus torch; reported, not required: the resizers differ),
that rap-edge's tokenization gives the Hugging Face tokenizer's ids, and for INT8 the accuracy
drop (cosine to fp32, nearest-neighbour changes among the evaluation crops).

Usage:
    python -m export.hf_encoder --hf-dir DIR [--kind auto|clip|siglip|dinov2]
        [--precision fp32|fp16|int8] [--calib SET] [--out DIR] [--no-text] [--store DIR]
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from export._common import command_main
from rap_edge.errors import BackendError, InvalidInputError, ModelStoreError, RapEdgeError
from rap_edge.eval import cosine_rows
from rap_edge.models import (
    Encoder,
    ModelManifest,
    ModelStore,
    Preprocess,
    TextEncoder,
    preprocess,
    sha256_file,
    write_manifest,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    import torch

KINDS = ("clip", "siglip", "dinov2")
PRECISIONS = ("fp32", "fp16", "int8")
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999}
# PIL resampling codes (Image.Resampling) that OpenCV can follow.
_RESAMPLE = {2: "bilinear", 3: "bicubic"}
_WEIGHTS = ("*.safetensors", "*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "spiece.model", "tokenizer.model")
# Placeholders until `rap-edge calibrate` measures them for the model (see extra.threshold_note).
_IMAGE_THRESHOLD = 0.8
_TEXT_THRESHOLD = 0.2
SAMPLE_TEXTS = (
    "a photo of a red mug",
    "my dog asleep on the sofa",
    "Bo, a Shiba Inu!",
    "a person wearing glasses",
    "the kitchen table at night",
    "a very long caption " + "that goes on and on " * 30,
)

# The provenance "source" of every manifest written here (``models verify`` dispatches on it).
SOURCE = "local Hugging Face folder"


@dataclass(frozen=True, slots=True)
class HfFolder:
    """A checked Hugging Face model folder.

    Attributes:
        path: The folder (absolute).
        kind: ``clip``, ``siglip`` or ``dinov2``.
        config: ``config.json``.
        digest: SHA-256 over the weight files and ``preprocessor_config.json`` (the vectors
            depend on both); encoder ids carry its first 12 digits.
        weights: The weight files' names.
    """

    path: Path
    kind: str
    config: dict[str, Any]
    digest: str
    weights: tuple[str, ...]

    @property
    def name(self) -> str:
        """``hf-<kind>-<folder name>``, lower case, safe in file names."""
        slug = re.sub(r"[^a-z0-9._-]+", "-", self.path.name.lower()).strip("-.") or "model"
        return f"hf-{self.kind}-{slug}"


@dataclass(frozen=True, slots=True)
class Exported:
    """What one precision's export wrote.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        image: The image encoder's manifest.
        text: The text tower's manifest (None for DINOv2 or ``--no-text``).
    """

    precision: str
    image: ModelManifest
    text: ModelManifest | None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        msg = f"{path}: missing; {what}"
        raise ModelStoreError(msg) from err
    except (OSError, UnicodeDecodeError, ValueError) as err:
        msg = f"{path}: not a readable JSON file ({err})"
        raise ModelStoreError(msg) from err
    if not isinstance(data, dict):
        msg = f"{path}: expected a JSON object"
        raise ModelStoreError(msg)
    return data


def inspect_folder(hf_dir: str | Path, *, kind: str = "auto") -> HfFolder:
    """Check a Hugging Face folder before anything heavy is imported.

    Raises:
        InvalidInputError: if the folder is missing, its model type is unsupported, or
            ``kind`` contradicts it.
        ModelStoreError: if ``config.json``, ``preprocessor_config.json`` or the weights are
            missing or unreadable.
    """
    path = Path(hf_dir).expanduser().resolve()
    if not path.is_dir():
        msg = f"{path}: no such folder (--hf-dir must be a local Hugging Face model folder)"
        raise InvalidInputError(msg)
    config = _read_json(
        path / "config.json", "not a Hugging Face model folder (save it with save_pretrained)"
    )
    model_type = config.get("model_type")
    if model_type not in KINDS:
        msg = (
            f"{path / 'config.json'}: model_type {model_type!r} is not supported; "
            f"supported: {', '.join(KINDS)}"
        )
        raise InvalidInputError(msg)
    if kind not in {"auto", model_type}:
        msg = f"--kind {kind} but {path / 'config.json'} says model_type {model_type!r}"
        raise InvalidInputError(msg)
    pre_path = path / "preprocessor_config.json"
    _read_json(
        pre_path,
        "the image preprocessing must come from the folder (save the "
        "model's image processor with save_pretrained)",
    )
    weights = sorted({p for pattern in _WEIGHTS for p in path.glob(pattern)})
    if not weights:
        msg = f"{path}: no weights (*.safetensors or *.bin)"
        raise ModelStoreError(msg)
    digest = hashlib.sha256()
    for p in [*weights, pre_path]:
        digest.update(f"{p.name}:{sha256_file(p)}\n".encode())
    return HfFolder(
        path=path,
        kind=model_type,
        config=config,
        digest=digest.hexdigest(),
        weights=tuple(p.name for p in weights),
    )


def _size(value: Any, key: str) -> int | None:  # noqa: ANN401 - SizeDict, dict or int
    if isinstance(value, int):
        return value
    got = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
    return int(got) if got is not None else None


def preprocess_from_processor(processor: Any, where: Path) -> Preprocess:  # noqa: ANN401 - any HF image processor
    """The manifest's preprocessing, from a Hugging Face image processor's settings.

    Raises:
        InvalidInputError: naming ``where`` if the processor does something the runtime cannot
            (no resize, a resize without a crop to a fixed size, an unknown resampling).
    """

    def unsupported(what: str) -> InvalidInputError:
        return InvalidInputError(f"{where}: unsupported preprocessing: {what}")

    size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
    if not getattr(processor, "do_resize", True) or size is None:
        msg = "do_resize is false (the runtime needs a fixed input size)"
        raise unsupported(msg)
    shortest = _size(size, "shortest_edge")
    height, width = _size(size, "height"), _size(size, "width")
    if getattr(processor, "do_center_crop", False):
        if shortest is None or crop is None:
            raise unsupported(f"centre crop after a resize to {size} (only shortest_edge)")
        resize = "shortest_center_crop"
        crop_h, crop_w = _size(crop, "height"), _size(crop, "width")
        if crop_h is None or crop_w is None or shortest < max(crop_h, crop_w):
            raise unsupported(f"crop {crop} larger than the shortest edge {shortest}")
        height, width = crop_h, crop_w
    elif height is None or width is None:
        raise unsupported(f"resize to {size} without a centre crop (no fixed input size)")
    else:
        resize, shortest = "stretch", 0
    resample = int(getattr(processor, "resample", 2))
    if resample not in _RESAMPLE:
        raise unsupported(f"resample {resample} (supported: 2 bilinear, 3 bicubic)")
    normalize = getattr(processor, "do_normalize", True)
    mean = tuple(float(v) for v in processor.image_mean) if normalize else (0.0, 0.0, 0.0)
    std = tuple(float(v) for v in processor.image_std) if normalize else (1.0, 1.0, 1.0)
    if len(mean) != 3 or len(std) != 3:  # noqa: PLR2004
        raise unsupported(f"image_mean {mean} / image_std {std} (three channels expected)")
    scale = float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 1.0
    return Preprocess(
        height=height,
        width=width,
        color="RGB",
        scale=scale,
        mean=mean,
        std=std,
        resize=resize,
        resize_shortest=shortest,
        interpolation=_RESAMPLE[resample],
        antialias=True,
    )


def synthetic_images(n: int = 8, *, seed: int = 0) -> list[np.ndarray]:
    """Deterministic BGR images of varied sizes: gradients, shapes and noise."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(40, 240, size=2))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], axis=-1)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        for _ in range(4):
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.circle(img, (cx, cy), int(rng.integers(4, max(h, w) // 3)), colour, -1)
        images.append(img)
    return images


def _read_folder(path: Path) -> list[np.ndarray]:
    files = sorted(
        p for p in path.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    )
    images = []
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            msg = f"{p}: not a readable image"
            raise InvalidInputError(msg)
        images.append(img)
    if not images:
        msg = f"{path}: no images (.jpg, .png, .bmp, .webp) for calibration"
        raise InvalidInputError(msg)
    return images


def load_calibration(name: str, store: ModelStore | None = None) -> list[np.ndarray]:
    """A calibration set's images (BGR uint8).

    ``name`` is a set folder made by ``rap-edge calibrate collect`` (with ``set.json``), any
    folder of images, or the name of a set in ``calibration/sets/`` (e.g. ``check-photos``,
    pulled into ``store`` if needed).
    """
    from export.quantize import load_set

    path = Path(name).expanduser()
    if path.is_dir() and not (path / "set.json").is_file():
        return _read_folder(path)
    try:
        # An absolute path, so that a folder in the working directory is not taken for a name.
        return load_set(str(path.resolve()) if path.is_dir() else name, store or ModelStore())
    except SystemExit as err:  # load_set's way of failing on a missing set
        raise InvalidInputError(str(err)) from None


def _features(out: Any) -> torch.Tensor:  # noqa: ANN401 - a tensor or a ModelOutput
    """``get_*_features`` returns a tensor in transformers 4 and a ModelOutput in 5."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _towers(model: Any, kind: str) -> tuple[torch.nn.Module, torch.nn.Module | None]:  # noqa: ANN401
    from torch import nn

    class ImageTower(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if kind == "dinov2":
                return self.model(pixel_values=x).pooler_output  # type: ignore[no-any-return]
            return _features(self.model.get_image_features(pixel_values=x))

    class ClipText(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return _features(
                self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            )

    class SiglipText(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return _features(self.model.get_text_features(input_ids=input_ids))

    text = {"clip": ClipText, "siglip": SiglipText}.get(kind)
    return ImageTower().eval(), text().eval() if text else None


def _export_onnx(
    module: torch.nn.Module,
    path: Path,
    example: dict[str, torch.Tensor],
    output: str,
    *,
    input_names: Sequence[str] | None = None,
) -> str:
    """Dynamo export, opset 18, batch dynamic in every input; return the file's SHA-256.

    ``example`` maps ``forward``'s argument names to example tensors (batch 2, as in
    ``export._common.export_onnx``); the ONNX inputs take ``input_names`` (default: the same).
    """
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        module,
        tuple(example.values()),
        str(path),
        input_names=list(input_names or example),
        output_names=[output],
        dynamic_shapes={k: {0: batch} for k in example},
        opset_version=18,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return sha256_file(path)


def _to_fp16(src: Path, dst: Path) -> str:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return sha256_file(dst)


def _cosines(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    cos = cosine_rows(got, want)
    return {
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "max_abs_diff": float(np.abs(got - want).max()),
    }


def _torch_embed(module: torch.nn.Module, **inputs: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = module(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()})
    return out.numpy().astype(np.float32)  # type: ignore[no-any-return]


def _end_to_end(
    processor: Any,  # noqa: ANN401
    manifest: ModelManifest,
    image_tower: torch.nn.Module,
    images: Sequence[np.ndarray],
) -> dict[str, Any]:
    """rap-edge's preprocessing + ONNX against the Hugging Face PIL processor + torch."""
    try:
        from PIL import Image

        rgb = [Image.fromarray(np.ascontiguousarray(img[:, :, ::-1])) for img in images]
        pixels = np.asarray(
            processor(images=rgb, return_tensors="np")["pixel_values"], dtype=np.float32
        )
    except Exception as err:  # noqa: BLE001 - any failure of the optional reference is reported
        return {"skipped": f"the Hugging Face image processor could not run: {err}"}
    ours = preprocess(list(images), manifest)
    if pixels.shape != ours.shape:
        return {"skipped": f"the processor's tensor is {pixels.shape}, rap-edge's {ours.shape}"}
    want = _torch_embed(image_tower, x=pixels)
    got = Encoder(manifest, provider="cpu").embed(list(images))
    return {
        "reference": f"Hugging Face {type(processor).__name__} (PIL) + torch eager",
        "runtime": "rap_edge.models.preprocess (OpenCV) + onnxruntime CPU",
        "images": len(images),
        **_cosines(got, want),
        "input_mean_abs_diff": float(np.abs(pixels - ours).mean()),
        "input_max_abs_diff": float(np.abs(pixels - ours).max()),
        "note": "reported, not required: OpenCV and PIL resample differently",
    }


def _image_parity(
    manifest: ModelManifest,
    tower: torch.nn.Module,
    images: Sequence[np.ndarray],
    *,
    source: str,
    required: float,
) -> dict[str, Any]:
    import torch
    import transformers

    want = _torch_embed(tower, x=preprocess(list(images), manifest))
    got = Encoder(manifest, provider="cpu").embed(list(images))
    result = _cosines(got, want)
    return {
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__} "
        "eager fp32, same input tensors",
        "runtime": "onnxruntime CPU through rap_edge.models.Encoder",
        "images": len(images),
        "inputs": source,
        **result,
        "required_min_cosine": required,
        "ok": bool(result["min_cosine"] >= required),
    }


def _tokenizer_facts(folder: HfFolder, out_dir: Path, name: str) -> tuple[Any, dict[str, Any]]:
    """The Hugging Face tokenizer and the text manifest's tokenization settings.

    Writes ``NAME.tokenizer.json`` (the ``tokenizers`` library's format) for the runtime.
    """
    from transformers import AutoTokenizer

    # transformers 5 builds an empty tokenizer (every word unknown) from a folder without one.
    if not any((folder.path / f).is_file() for f in _TOKENIZER_FILES):
        msg = (
            f"{folder.path}: no tokenizer for the text tower (none of "
            f"{', '.join(_TOKENIZER_FILES)}); use --no-text to export the image encoder "
            "alone"
        )
        raise ModelStoreError(msg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder.path)
    except Exception as err:
        msg = (
            f"{folder.path}: no usable tokenizer for the text tower ({err}); "
            "use --no-text to export the image encoder alone"
        )
        raise ModelStoreError(msg) from err
    backend: Any = getattr(tokenizer, "backend_tokenizer", None)
    sentencepiece = backend is None
    if sentencepiece:
        # SigLIP's own tokenizer is SentencePiece; its model converts as T5's does.
        try:
            from transformers.convert_slow_tokenizer import T5Converter

            backend = T5Converter(tokenizer).converted()  # type: ignore[no-untyped-call]
        except Exception as err:
            msg = (
                f"{folder.path}: cannot convert the {type(tokenizer).__name__} tokenizer "
                f"to a tokenizer.json ({err}); use --no-text"
            )
            raise ModelStoreError(msg) from err
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(backend.to_str())
    backend.no_padding()
    backend.no_truncation()
    # In a subfolder: `rap-edge models list/verify` read every *.json of the folder as a manifest.
    path = out_dir / f"{name}.tokenizer" / "tokenizer.json"
    path.parent.mkdir(exist_ok=True)
    backend.save(str(path))
    text_config = folder.config.get("text_config") or {}
    max_length = int(
        text_config.get("max_position_embeddings") or {"clip": 77, "siglip": 64}[folder.kind]
    )
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = text_config.get("pad_token_id")
    if pad_id is None:
        msg = f"{folder.path}: the tokenizer has no pad token and config.json no pad_token_id"
        raise ModelStoreError(msg)
    siglip_canonical = sentencepiece and folder.kind == "siglip"
    return tokenizer, {
        "tokenizer": f"{path.parent.name}/{path.name}",
        "tokenizer_sha256": sha256_file(path),
        "tokenizer_class": type(tokenizer).__name__,
        "max_length": max_length,
        "padding": "max_length",
        "truncation": True,
        "pad_id": int(pad_id),
        "pad_token": backend.id_to_token(int(pad_id)),
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "attention_mask": folder.kind == "clip",
        "pooling": "first EOS token (CLIP)"
        if folder.kind == "clip"
        else "last position, so padding to max_length is required (SigLIP)",
        "lowercase": bool(siglip_canonical and getattr(tokenizer, "do_lower_case", True)),
        "strip_punctuation": siglip_canonical,
    }


def _text_parity(
    manifest: ModelManifest,
    tower: torch.nn.Module,
    tokenizer: Any,  # noqa: ANN401
    *,
    required: float | None,
) -> dict[str, Any]:
    import torch
    import transformers

    max_length = int(manifest.extra["max_length"])
    ref = tokenizer(
        list(SAMPLE_TEXTS),
        padding="max_length",
        max_length=max_length,
        truncation=True,
        return_tensors="np",
    )
    ids = np.asarray(ref["input_ids"], dtype=np.int64)
    mask = np.asarray(ref["attention_mask"], dtype=np.int64)
    inputs = (
        {"input_ids": ids, "attention_mask": mask}
        if manifest.extra["attention_mask"]
        else {"input_ids": ids}
    )
    want = _torch_embed(tower, **inputs)
    encoder = TextEncoder(manifest, provider="cpu")
    ours, _ = encoder.tokenize(list(SAMPLE_TEXTS))
    same_ids = int((ours == ids).all(axis=1).sum())
    result = _cosines(encoder.embed_tokens(ids, mask), want)
    ok = same_ids == len(SAMPLE_TEXTS) and (required is None or result["min_cosine"] >= required)
    return {
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__} "
        f"eager fp32, ids from {type(tokenizer).__name__}",
        "runtime": "onnxruntime CPU through rap_edge.models.TextEncoder",
        "texts": len(SAMPLE_TEXTS),
        **result,
        "end_to_end_min_cosine": float(cosine_rows(encoder.embed(list(SAMPLE_TEXTS)), want).min()),
        "tokenization_equal": f"{same_ids}/{len(SAMPLE_TEXTS)}",
        "required_min_cosine": required,
        "ok": ok,
    }


def _provenance(folder: HfFolder) -> dict[str, Any]:
    import torch
    import transformers

    return {
        "source": SOURCE,
        "hf_dir": str(folder.path),
        "model_type": folder.kind,
        "architectures": folder.config.get("architectures"),
        "weights": list(folder.weights),
        "weights_and_preprocessing_sha256": folder.digest,
        "exported_with": f"transformers {transformers.__version__}, torch {torch.__version__}",
    }


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _require(parity: dict[str, Any], what: str, *paths: Path) -> None:
    if not parity["ok"]:
        _remove(*paths)
        msg = (
            f"{what}: parity check failed (min cosine {parity['min_cosine']:.6f}, "
            f"required {parity['required_min_cosine']}; tokenization equal "
            f"{parity.get('tokenization_equal', 'n/a')}); nothing written"
        )
        raise BackendError(msg)


def _load_model(folder: HfFolder) -> Any:  # noqa: ANN401 - a transformers PreTrainedModel
    import torch
    import transformers

    cls: Any = {
        "clip": transformers.CLIPModel,
        "siglip": transformers.SiglipModel,
        "dinov2": transformers.Dinov2Model,
    }[folder.kind]
    try:
        model = cls.from_pretrained(folder.path, local_files_only=True, dtype=torch.float32)
    except Exception as err:
        msg = f"{folder.path}: transformers cannot load it as {cls.__name__} ({err})"
        raise ModelStoreError(msg) from err
    return model.eval()


def export(
    hf_dir: str | Path | HfFolder,
    out_dir: Path,
    *,
    kind: str = "auto",
    precisions: Sequence[str] = ("fp32",),
    text: bool = True,
    images: Sequence[np.ndarray] | None = None,
    calibration: Sequence[np.ndarray] | None = None,
    calibration_name: str | None = None,
    say: Callable[[str], None] = print,
) -> list[Exported]:
    """Export the image encoder (and text tower) in each precision; see the module docstring.

    Args:
        hf_dir: The Hugging Face folder (or its :func:`inspect_folder` result).
        out_dir: Where the files go (created).
        kind: ``auto`` (from ``config.json``) or the expected model type.
        precisions: Any of ``fp32``, ``fp16``, ``int8``; fp32 is always written.
        text: Export the text tower too (CLIP, SigLIP).
        images: BGR images for the parity checks (default: the calibration set, else
            :func:`synthetic_images`).
        calibration: BGR images for INT8 (required for ``int8``): calibrated on half their
            crops, evaluated on all.
        calibration_name: The set's name or folder, recorded in the INT8 manifest so that
            ``models verify`` re-checks it on the same images.
        say: Progress lines.

    Returns:
        One :class:`Exported` per precision, in the order given.

    Raises:
        InvalidInputError: on a bad folder, kind or precision, or ``int8`` without calibration.
        ModelStoreError: if a file the export needs is missing or unreadable.
        BackendError: if a parity check fails (that precision's files are deleted).
    """
    from export.quantize import crops_of, quantize

    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        msg = f"unknown precision(s) {sorted(unknown)}; expected {', '.join(PRECISIONS)}"
        raise InvalidInputError(msg)
    if "int8" in precisions and not calibration:
        msg = "int8 needs calibration images (--calib)"
        raise InvalidInputError(msg)
    folder = hf_dir if isinstance(hf_dir, HfFolder) else inspect_folder(hf_dir, kind=kind)
    name = folder.name
    if images is None:
        images = list(calibration[:16]) if calibration else synthetic_images()
        source = (
            f"{len(images)} calibration images"
            if calibration
            else f"{len(images)} synthetic images (gradients, discs, noise; seed 0)"
        )
    else:
        source = f"{len(images)} given images"
    out_dir.mkdir(parents=True, exist_ok=True)

    say(f"[{name}] loading {folder.kind} from {folder.path}")
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(folder.path, backend="pil")
    except Exception as err:
        msg = (
            f"{folder.path / 'preprocessor_config.json'}: cannot be read as an image "
            f"processor ({err})"
        )
        raise ModelStoreError(msg) from err
    pre = preprocess_from_processor(processor, folder.path / "preprocessor_config.json")
    model = _load_model(folder)
    image_tower, text_tower = _towers(model, folder.kind)
    if not text:
        text_tower = None
    tokenizer: Any  # None exactly when text_tower is None
    tokenizer, facts = (
        _tokenizer_facts(folder, out_dir, name) if text_tower is not None else (None, {})
    )
    provenance = _provenance(folder)
    digest = folder.digest[:12]
    import torch

    with torch.no_grad():
        dim = int(image_tower(torch.zeros(1, 3, pre.height, pre.width)).shape[-1])
    image_id = f"{name}-{dim}-fp32@{digest}"
    threshold_note = (
        "placeholder, not calibrated for this model: measure one with `rap-edge calibrate`"
    )

    say(
        f"[{name}] exporting the image encoder ({pre.height}x{pre.width}, {pre.resize}, "
        f"{pre.interpolation}) -> {name}.onnx"
    )
    image_path = out_dir / f"{name}.onnx"
    image = ModelManifest(
        name=name,
        task="embed",
        encoder_id=image_id,
        onnx=image_path,
        onnx_sha256=_export_onnx(
            image_tower,
            image_path,
            {"x": torch.zeros(2, 3, pre.height, pre.width)},
            "image_embeds",
            input_names=["images"],
        ),
        input_name="images",
        output_name="image_embeds",
        dim=dim,
        metric="cosine",
        threshold=_IMAGE_THRESHOLD,
        preprocess=pre,
        provenance=provenance,
        extra={
            "kind": folder.kind,
            "threshold_note": threshold_note,
            "text_manifest": f"{name}.text.json" if text_tower else None,
        },
    )
    say(f"[{name}] checking the image encoder against torch on {source}")
    parity = _image_parity(image, image_tower, images, source=source, required=MIN_COSINE["fp32"])
    _require(parity, f"{name}.onnx", image_path)
    parity["end_to_end"] = _end_to_end(processor, image, image_tower, images)
    image = replace(image, parity=parity, path=out_dir / f"{name}.json")
    write_manifest(image, out_dir / f"{name}.json")
    say(
        f"[{name}] image fp32: min cosine {parity['min_cosine']:.7f} (ONNX vs torch); end to "
        f"end vs the HF processor: {parity['end_to_end'].get('min_cosine', 'skipped')}"
    )

    text_manifest: ModelManifest | None = None
    if text_tower is not None:
        say(f"[{name}] exporting the text tower -> {name}.text.onnx")
        example = tokenizer(
            list(SAMPLE_TEXTS[:2]),
            padding="max_length",
            max_length=facts["max_length"],
            truncation=True,
            return_tensors="pt",
        )
        inputs = {"input_ids": example["input_ids"].long()}
        if facts["attention_mask"]:
            inputs["attention_mask"] = example["attention_mask"].long()
        text_path = out_dir / f"{name}.text.onnx"
        text_manifest = ModelManifest(
            name=f"{name}-text",
            task="embed_text",
            encoder_id=f"{name}-text-{dim}-fp32@{digest}",
            onnx=text_path,
            onnx_sha256=_export_onnx(text_tower, text_path, inputs, "text_embeds"),
            input_name="input_ids",
            output_name="text_embeds",
            dim=dim,
            metric="cosine",
            threshold=_TEXT_THRESHOLD,
            # Unused by text models (their input is token ids); kept for the manifest schema.
            preprocess=Preprocess(
                height=1,
                width=1,
                color="RGB",
                scale=1.0,
                mean=(0.0, 0.0, 0.0),
                std=(1.0, 1.0, 1.0),
            ),
            provenance=provenance,
            extra={
                **facts,
                "image_encoder_id": image_id,
                "image_manifest": f"{name}.json",
                "threshold_note": threshold_note + " (text-to-image cosines are lower than "
                "image-to-image ones)",
            },
        )
        text_parity = _text_parity(
            text_manifest, text_tower, tokenizer, required=MIN_COSINE["fp32"]
        )
        _require(
            text_parity,
            f"{name}.text.onnx",
            text_path,
            out_dir / facts["tokenizer"],
            out_dir / f"{name}.json",
            image_path,
        )
        text_manifest = replace(
            text_manifest, parity=text_parity, path=out_dir / f"{name}.text.json"
        )
        write_manifest(text_manifest, out_dir / f"{name}.text.json")
        say(
            f"[{name}] text fp32: min cosine {text_parity['min_cosine']:.7f}, tokenization "
            f"equal {text_parity['tokenization_equal']}"
        )

    results: list[Exported] = []
    for precision in precisions:
        if precision == "fp32":
            results.append(Exported("fp32", image, text_manifest))
            continue
        say(f"[{name}] {precision} variant")
        if precision == "fp16":
            variant = _fp16_image(image, image_tower, images, source=source)
        else:
            crops = crops_of(calibration or [])
            say(
                f"[{name}] INT8 QDQ: calibrating on {len(crops[::2])} crops of "
                f"{len(calibration or [])} images, evaluating on {len(crops)}"
            )
            (variant,) = quantize(
                out_dir / f"{name}.json",
                calibration=crops[::2],
                evaluation=crops,
                variants=("qdq",),
            )
            variant = replace(
                variant,
                path=variant.onnx.with_suffix(".json"),
                parity={**variant.parity, "evaluation_set": calibration_name},
            )
            if text_manifest is not None:
                variant = replace(
                    variant,
                    extra={**variant.extra, "text_manifest": f"{name}.text.int8-dynamic.json"},
                )
            write_manifest(variant, variant.onnx.with_suffix(".json"))
        variant_text = None
        if text_manifest is not None:
            variant_text = _text_variant(
                text_manifest,
                text_tower,
                tokenizer,
                precision,
                image_encoder_id=variant.encoder_id,
                image_manifest=variant.path,
            )
        say(
            f"[{name}] image {precision}: {_summary(variant.parity)}"
            + (f"; text: {_summary(variant_text.parity)}" if variant_text else "")
        )
        results.append(Exported(precision, variant, variant_text))
    return results


def _summary(parity: dict[str, Any]) -> str:
    if "min_cosine_to_fp32" in parity:
        return (
            f"min cosine to fp32 {parity['min_cosine_to_fp32']:.5f}, mean "
            f"{parity['mean_cosine_to_fp32']:.5f}, nearest-neighbour changes "
            f"{parity['nearest_neighbour_changes']}/{parity['crops']}"
        )
    return f"min cosine to torch fp32 {parity['min_cosine']:.6f}"


def _fp16_image(
    fp32: ModelManifest, tower: torch.nn.Module, images: Sequence[np.ndarray], *, source: str
) -> ModelManifest:
    path = fp32.onnx.with_name(f"{fp32.name}.fp16.onnx")
    manifest = replace(
        fp32,
        name=f"{fp32.name}-fp16",
        onnx=path,
        onnx_sha256=_to_fp16(fp32.onnx, path),
        encoder_id=fp32.encoder_id.replace("-fp32@", "-fp16@"),
        parity={},
        extra={
            **fp32.extra,
            "text_manifest": f"{fp32.name}.text.fp16.json"
            if fp32.extra.get("text_manifest")
            else None,
        },
    )
    parity = _image_parity(manifest, tower, images, source=source, required=MIN_COSINE["fp16"])
    _require(parity, path.name, path)
    manifest = replace(
        manifest,
        parity={
            **parity,
            "conversion": "onnxruntime.transformers.float16, inputs and outputs kept fp32",
        },
    )
    json_path = path.with_suffix(".json")
    write_manifest(manifest, json_path)
    return replace(manifest, path=json_path)


def _text_variant(
    fp32: ModelManifest,
    tower: torch.nn.Module | None,
    tokenizer: Any,  # noqa: ANN401
    precision: str,
    *,
    image_encoder_id: str,
    image_manifest: Path | None,
) -> ModelManifest:
    base = fp32.onnx.with_suffix("")
    if precision == "fp16":
        path = base.with_name(f"{base.name}.fp16.onnx")
        digest = _to_fp16(fp32.onnx, path)
        how = "onnxruntime.transformers.float16, inputs and outputs kept fp32"
        required: float | None = MIN_COSINE["fp16"]
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        path = base.with_name(f"{base.name}.int8-dynamic.onnx")
        quantize_dynamic(fp32.onnx, path, weight_type=QuantType.QInt8)
        digest = sha256_file(path)
        how = "onnxruntime quantize_dynamic, int8 weights (no calibration)"
        required = None
    tag = "fp16" if precision == "fp16" else "int8dynamic"
    manifest = replace(
        fp32,
        name=f"{fp32.name}-{tag}",
        onnx=path,
        onnx_sha256=digest,
        parity={},
        encoder_id=fp32.encoder_id.replace("-fp32@", f"-{tag}@"),
        extra={
            **fp32.extra,
            "image_encoder_id": image_encoder_id,
            "image_manifest": image_manifest.name if image_manifest else None,
        },
    )
    if tower is None:
        msg = "internal: text variant without a text tower"
        raise BackendError(msg)
    parity = _text_parity(manifest, tower, tokenizer, required=required)
    _require(parity, path.name, path)
    manifest = replace(manifest, parity={**parity, "conversion": how})
    json_path = path.with_suffix(".json")
    write_manifest(manifest, json_path)
    return replace(manifest, path=json_path)


def check(manifest: ModelManifest) -> dict[str, Any]:
    """Re-run an exported model's parity against torch from its folder (``models verify``).

    Image encoders (fp32, fp16) are checked on :func:`synthetic_images`, text towers on
    :data:`SAMPLE_TEXTS`, each against the bar recorded at export. INT8 image variants are
    checked against their fp32 model by ``export.quantize.check`` instead.
    """
    from transformers import AutoTokenizer

    hf_dir = manifest.provenance.get("hf_dir")
    if manifest.provenance.get("source") != SOURCE or not hf_dir:
        return {"ok": False, "error": "not exported from a Hugging Face folder"}
    try:
        folder = inspect_folder(hf_dir)
    except RapEdgeError as err:
        return {"ok": False, "error": str(err)}
    if folder.digest != manifest.provenance.get("weights_and_preprocessing_sha256"):
        return {
            "ok": False,
            "error": f"{folder.path}: weights or preprocessing changed since the export",
        }
    image_tower, text_tower = _towers(_load_model(folder), folder.kind)
    required = manifest.parity.get("required_min_cosine")
    recorded = manifest.parity.get("min_cosine")
    if required is None and isinstance(recorded, float):  # an INT8 text tower: no bar at
        required = recorded - 1e-3  # export, so it must reproduce what was recorded
    if manifest.task == "embed_text" and text_tower is not None:
        return _text_parity(
            manifest, text_tower, AutoTokenizer.from_pretrained(folder.path), required=required
        )
    if manifest.task != "embed" or not isinstance(required, float):
        return {
            "ok": False,
            "error": f"no torch check for {manifest.name!r} (task "
            f"{manifest.task}, parity {sorted(manifest.parity)})",
        }
    return _image_parity(
        manifest,
        image_tower,
        synthetic_images(),
        required=required,
        source="8 synthetic images (gradients, discs, noise; seed 0)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rap-edge export encoder`` (and ``python -m export.hf_encoder``)."""
    parser.add_argument(
        "--hf-dir",
        required=True,
        metavar="DIR",
        help="local Hugging Face model folder (config.json, weights, "
        "preprocessor_config.json; a tokenizer for the text tower)",
    )
    parser.add_argument(
        "--kind",
        choices=["auto", *KINDS],
        default="auto",
        help="model family (default: config.json's model_type)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default), fp16 (converted, I/O fp32) or int8 (static QDQ "
        "calibrated on --calib); fp32 is always written as the reference",
    )
    parser.add_argument(
        "--calib",
        metavar="SET",
        default=None,
        help="calibration set for int8 (and the parity images): a folder from "
        "`rap-edge calibrate collect`, any folder of images, or a set name in "
        "calibration/sets/ (default for int8: check-photos)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the ONNX files and manifests (default: <store>/onnx)",
    )
    parser.add_argument("--no-text", action="store_true", help="skip the CLIP/SigLIP text tower")
    parser.add_argument(
        "--store", metavar="DIR", help="model store (default: as `rap-edge models pull`)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``rap-edge export encoder`` with parsed ``args``; return the exit code."""
    folder = inspect_folder(args.hf_dir, kind=args.kind)  # fail fast, before torch loads
    store = ModelStore(args.store)
    out = Path(args.out).expanduser() if args.out else store.path / "onnx"
    calib_name = args.calib or ("check-photos" if args.precision == "int8" else None)
    calibration = None
    if calib_name:
        print(f"[{folder.name}] reading calibration set {calib_name}")
        calibration = load_calibration(calib_name, store)
    results = export(
        folder,
        out,
        precisions=("fp32", args.precision) if args.precision != "fp32" else ("fp32",),
        text=not args.no_text,
        calibration=calibration,
        calibration_name=calib_name,
        say=print,
    )
    for r in results:
        for m in (r.image, r.text):
            if m is not None:
                print(f"wrote {m.onnx} ({m.encoder_id})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
