"""Model manifests: what an exported model expects and produces, written next to the ONNX file.

The runtime reads everything about a model from its manifest (input size, layout, colour order,
scaling, mean/std, output name and dimension, metric, recommended threshold), so a re-export
cannot drift from constants hard-coded somewhere else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rap_edge.errors import ModelStoreError

__all__ = ["MANIFEST_VERSION", "ModelManifest", "Preprocess", "load_manifest", "write_manifest"]

MANIFEST_VERSION = 1
RESIZES = ("stretch", "shortest_center_crop")
INTERPOLATIONS = ("bilinear", "bicubic")
# Tasks whose model takes no image tensor: landmarks read grey pixels at their own points, text
# encoders take token ids (their tokenization is in ``extra``).
_NO_TENSOR_TASKS = {"landmarks", "embed_text"}


@dataclass(frozen=True, slots=True)
class Preprocess:
    """How a BGR uint8 image becomes the model's input tensor.

    Attributes:
        height: Input height in pixels.
        width: Input width in pixels.
        color: Channel order the model wants, ``RGB`` or ``BGR``.
        scale: Factor applied to 0..255 pixel values first (1/255 for 0..1 inputs).
        mean: Per-channel mean subtracted after scaling (in the model's channel order).
        std: Per-channel divisor applied after the mean.
        layout: Tensor layout, ``NCHW`` or ``NHWC``.
        resize: ``stretch`` (resize to exactly height x width) or ``shortest_center_crop``
            (resize the shortest edge to ``resize_shortest``, keeping the aspect ratio, then
            crop height x width from the centre, as CLIP and DINOv2 processors do).
        resize_shortest: Shortest-edge size before the centre crop (``shortest_center_crop``
            only; 0 otherwise). At least ``height`` and ``width``.
        interpolation: ``bilinear`` or ``bicubic`` (OpenCV's, see ``rap_edge.models.preprocess``).
        antialias: Shrink with OpenCV's ``INTER_AREA`` instead (enlarging still uses
            ``interpolation``): closer to PIL's antialiased resampling, which Hugging Face image
            processors use (on the check photos at 224 pixels: mean absolute difference 0.69
            of 255 against PIL bicubic, 2.95 with ``INTER_CUBIC``).
    """

    height: int
    width: int
    color: str
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "NCHW"
    resize: str = "stretch"
    resize_shortest: int = 0
    interpolation: str = "bilinear"
    antialias: bool = False


@dataclass(frozen=True, slots=True)
class ModelManifest:
    """An exported model.

    Attributes:
        name: Model name, e.g. ``mobilenetv2-imagenet``.
        task: ``embed`` (image to vector) or ``detect`` (image to boxes).
        encoder_id: Stable id of the vectors this model makes (name plus ONNX hash prefix).
        onnx: Absolute path of the ONNX file.
        onnx_sha256: Its expected hex SHA-256.
        input_name: Name of the image input.
        output_name: Name of the output.
        dim: Output vector length.
        metric: ``cosine``.
        threshold: Recommended similarity threshold until a calibration exists.
        preprocess: Input preparation.
        provenance: Where the weights came from (carrier package, version, hashes, licence).
        parity: How the export was checked against the reference runtime.
        extra: Task-specific settings (for a detector: its decoding, class names, ...).
        path: The manifest file itself.
    """

    name: str
    task: str
    encoder_id: str
    onnx: Path
    onnx_sha256: str
    input_name: str
    output_name: str
    dim: int
    metric: str
    threshold: float
    preprocess: Preprocess
    provenance: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def write_manifest(manifest: ModelManifest, path: Path) -> None:
    """Write ``manifest`` as JSON (the ONNX path relative to the manifest's folder)."""
    data = asdict(manifest)
    data.pop("path")
    data["onnx"] = str(Path(manifest.onnx).name)
    data["manifest_version"] = MANIFEST_VERSION
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:  # noqa: ANN401
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        msg = f"{path}: manifest field {key!r} is missing or not {getattr(kind, '__name__', kind)}"
        raise ModelStoreError(msg)
    return value


def _flag(value: object, path: Path) -> bool:
    if not isinstance(value, bool):
        msg = f"{path}: manifest field 'preprocess.antialias' must be true or false"
        raise ModelStoreError(msg)
    return value


def _check_preprocess(pre: Preprocess, raw: dict[str, Any], path: Path) -> None:
    problem = ""
    if (
        pre.color not in {"RGB", "BGR"}
        or pre.layout not in {"NCHW", "NHWC"}
        or len(pre.mean) != 3  # noqa: PLR2004
        or len(pre.std) != 3  # noqa: PLR2004
        or 0 in pre.std
        or not 0 < pre.height <= 4096  # noqa: PLR2004
        or not 0 < pre.width <= 4096  # noqa: PLR2004
    ):
        problem = "value"
    elif pre.resize not in RESIZES:
        problem = f"resize {pre.resize!r} (expected one of {', '.join(RESIZES)})"
    elif pre.interpolation not in INTERPOLATIONS:
        problem = (
            f"interpolation {pre.interpolation!r} (expected one of {', '.join(INTERPOLATIONS)})"
        )
    elif pre.resize == "shortest_center_crop" and not (
        max(pre.height, pre.width) <= pre.resize_shortest <= 8192  # noqa: PLR2004
    ):
        problem = (
            f"resize_shortest {pre.resize_shortest} (shortest_center_crop needs at "
            f"least the crop size {pre.height}x{pre.width})"
        )
    if problem:
        msg = f"{path}: manifest field 'preprocess' has an unsupported {problem}: {raw}"
        raise ModelStoreError(msg)


#: JSON files that live beside the manifests in a models folder but are not manifests (the
#: calibrated thresholds `make models` installs there).
NOT_MANIFESTS = frozenset({"thresholds.json"})


def manifest_paths(folder: str | Path) -> list[Path]:
    """The model manifests in a models folder, sorted (none if it does not exist)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*.json") if p.name not in NOT_MANIFESTS)


def load_manifest(path: str | Path) -> ModelManifest:
    """Read and validate a manifest; every error names the file and the field.

    Raises:
        ModelStoreError: if the file is missing, not JSON, or a field is missing or wrong.
    """
    p = Path(path).expanduser().resolve()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        msg = f"{p}: manifest is missing (export the model first, e.g. `make models`)"
        raise ModelStoreError(msg) from err
    except (OSError, UnicodeDecodeError, ValueError) as err:
        msg = f"{p}: not a readable JSON manifest ({err})"
        raise ModelStoreError(msg) from err
    if not isinstance(data, dict):
        msg = f"{p}: a manifest must be a JSON object"
        raise ModelStoreError(msg)
    version = data.get("manifest_version")
    if version != MANIFEST_VERSION:
        msg = f"{p}: manifest version {version!r}; this rap-edge reads {MANIFEST_VERSION}"
        raise ModelStoreError(msg)
    pre = _field(data, "preprocess", dict, p)
    try:
        preprocess = Preprocess(
            height=int(pre["height"]),
            width=int(pre["width"]),
            color=str(pre["color"]),
            scale=float(pre["scale"]),
            mean=tuple(float(v) for v in pre["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in pre["std"]),  # type: ignore[arg-type]
            layout=str(pre.get("layout", "NCHW")),
            resize=str(pre.get("resize", "stretch")),
            resize_shortest=int(pre.get("resize_shortest", 0)),
            interpolation=str(pre.get("interpolation", "bilinear")),
            antialias=_flag(pre.get("antialias", False), p),
        )
    except (KeyError, TypeError, ValueError) as err:
        msg = f"{p}: manifest field 'preprocess' is incomplete ({err})"
        raise ModelStoreError(msg) from err
    if data.get("task") not in _NO_TENSOR_TASKS:
        _check_preprocess(preprocess, pre, p)
    return ModelManifest(
        name=_field(data, "name", str, p),
        task=_field(data, "task", str, p),
        encoder_id=_field(data, "encoder_id", str, p),
        onnx=p.parent / _field(data, "onnx", str, p),
        onnx_sha256=_field(data, "onnx_sha256", str, p),
        input_name=_field(data, "input_name", str, p),
        output_name=_field(data, "output_name", str, p),
        dim=_field(data, "dim", int, p),
        metric=_field(data, "metric", str, p),
        threshold=float(_field(data, "threshold", (int, float), p)),
        preprocess=preprocess,
        provenance=data.get("provenance") or {},
        parity=data.get("parity") or {},
        extra=data.get("extra") or {},
        path=p,
    )
