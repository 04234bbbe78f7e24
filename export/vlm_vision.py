"""A VLM's vision tower plus connector as ONNX (LLaVA, Idefics3/SmolVLM), checked against torch.

The image side of a vision-language model (vision encoder, feature-layer selection, projector
or pixel-shuffle connector) becomes one ONNX model, ``pixel_values [N, 3, H, W]`` to
``image_features [N, tokens, hidden]``, exported with the dynamo exporter (dynamic batch) and
checked against the same modules in torch before anything is written. The ``transformers``
generation backend then runs the image side through ONNX Runtime (``--vision-onnx DIR``), so on
a GPU it can run on TensorRT (``rap-edge export engine --onnx DIR/vision.onnx --precision
fp16``) or CUDA while the language model stays in torch.

Written into ``--out`` (default ``<model folder>-vision``): ``vision.onnx`` and
``rap_edge_vision.json`` (model type, input and output shapes, feature layer and strategy, the
source config's hash, which ties the tower to its model, and the parity figures).

Qwen2-VL is not supported: its vision tower takes a flattened, variable-length patch sequence
with a grid per image (rotary positions built from it), not a fixed image batch.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export._common import command_main
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.eval import cosine_rows
from rap_edge.models import sha256_file

if TYPE_CHECKING:
    import argparse

MANIFEST = "rap_edge_vision.json"
ONNX_NAME = "vision.onnx"
SUPPORTED = ("llava", "idefics3", "smolvlm")
MIN_COSINE = 0.9999


def _config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise InvalidInputError(f"model folder {folder} does not exist")
    path = folder / "config.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InvalidInputError(
            f"{folder} has no config.json: not a Hugging Face model folder"
        ) from err
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InvalidInputError(f"{path}: not readable JSON ({err})") from err
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind not in SUPPORTED:
        raise InvalidInputError(
            f"{path}: model_type {kind!r} has no vision-tower export here (supported: "
            f"{', '.join(SUPPORTED)}; Qwen2-VL's tower takes variable-length patch sequences)"
        )
    return config


def vision_module(model: Any, kind: str) -> Any:  # noqa: ANN401 - torch modules, lazily typed
    """The image side of a loaded VLM as one module: pixel values to image features."""
    import torch

    inner = model.model
    cfg = model.config

    class LlavaVision(torch.nn.Module):
        """Vision tower, the configured layer(s), CLS dropped or kept, projector."""

        def __init__(self) -> None:
            super().__init__()
            self.tower = inner.vision_tower
            self.projector = inner.multi_modal_projector
            layer = cfg.vision_feature_layer
            self.layers = [layer] if isinstance(layer, int) else list(layer)
            self.drop_cls = cfg.vision_feature_select_strategy == "default"

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            states = self.tower(pixel_values, output_hidden_states=True).hidden_states
            picked = [states[i][:, 1:] if self.drop_cls else states[i] for i in self.layers]
            out: torch.Tensor = self.projector(torch.cat(picked, dim=-1))
            return out

    class Idefics3Vision(torch.nn.Module):
        """Vision model on whole (unpadded) images, then the pixel-shuffle connector."""

        def __init__(self) -> None:
            super().__init__()
            self.tower = inner.vision_model
            self.connector = inner.connector
            self.patch = cfg.vision_config.patch_size

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            n, _, h, w = pixel_values.shape
            mask = torch.ones((n, h // self.patch, w // self.patch), dtype=torch.bool)
            hidden = self.tower(
                pixel_values=pixel_values, patch_attention_mask=mask
            ).last_hidden_state
            out: torch.Tensor = self.connector(hidden)
            return out

    module = LlavaVision() if kind == "llava" else Idefics3Vision()
    return module.eval()


def _load(folder: Path, kind: str) -> Any:  # noqa: ANN401
    import torch
    import transformers as tf

    cls = (
        tf.LlavaForConditionalGeneration
        if kind == "llava"
        else (
            tf.Idefics3ForConditionalGeneration
            if kind == "idefics3"
            else tf.SmolVLMForConditionalGeneration
        )
    )
    try:
        model = cls.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
        return model.eval()  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as err:
        raise ModelStoreError(
            f"{folder}: transformers cannot load the {kind} model "
            f"({str(err).splitlines()[0][:200]})"
        ) from err


def _image_size(config: dict[str, Any]) -> int:
    size = (config.get("vision_config") or {}).get("image_size")
    if not isinstance(size, int) or not 0 < size <= 4096:  # noqa: PLR2004
        raise InvalidInputError(
            f"config.json: vision_config.image_size is missing or absurd ({size!r})"
        )
    return size


def _compare(expected: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Per-token cosine and largest absolute difference of two feature batches."""
    a = expected.reshape(-1, expected.shape[-1])
    b = got.reshape(-1, got.shape[-1])
    return {
        "min_cosine": float(cosine_rows(a, b).min()),
        "max_abs_diff": float(np.abs(a.astype(np.float64) - b).max()),
    }


def export(folder: Path, out: Path, *, say: Any = print) -> dict[str, Any]:  # noqa: ANN401
    """Export, check and write the vision ONNX and its manifest; returns the manifest."""
    import torch
    import transformers as tf

    from rap_edge.runtime import create_session

    config = _config(folder)
    kind = str(config["model_type"])
    size = _image_size(config)
    say(f"loading {kind} from {folder} ...")
    module = vision_module(_load(folder, kind), kind)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / ONNX_NAME
    partial = out / (ONNX_NAME + ".partial")
    say(f"exporting the vision tower and connector ({size}x{size} input) ...")
    start = time.perf_counter()
    batch = torch.export.Dim("batch", min=1, max=64)
    with torch.no_grad():
        torch.onnx.export(
            module,
            (torch.zeros(2, 3, size, size),),
            str(partial),
            input_names=["pixel_values"],
            output_names=["image_features"],
            dynamic_shapes={"pixel_values": {0: batch}},
            opset_version=18,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    export_s = time.perf_counter() - start
    say("checking ONNX Runtime (CPU) against torch ...")
    session, _ = create_session(partial, provider="cpu")
    # Pixel values as the processor makes them are roughly unit-scaled; three seeded images,
    # so the batch dimension is exercised at a size other than the export example's.
    pixels = torch.from_numpy(
        np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32)
    )
    with torch.no_grad():
        expected = module(pixels).numpy()
    (got,) = session.run(["image_features"], {"pixel_values": pixels.numpy()})
    parity: dict[str, Any] = {
        "reference": f"torch fp32 (transformers {tf.__version__})",
        "images": 3,
        **_compare(expected, np.asarray(got)),
    }
    if parity["min_cosine"] < MIN_COSINE:
        partial.unlink(missing_ok=True)
        raise ModelStoreError(f"the exported vision tower does not match torch: {parity}")
    partial.replace(onnx_path)
    manifest = {
        "task": "vlm_vision",
        "model_type": kind,
        "source": str(folder.resolve()),
        "source_config_sha256": sha256_file(folder / "config.json"),
        "onnx": ONNX_NAME,
        "onnx_sha256": sha256_file(onnx_path),
        "input": {"name": "pixel_values", "shape": ["batch", 3, size, size]},
        "output": {
            "name": "image_features",
            "tokens_per_image": int(expected.shape[1]),
            "hidden": int(expected.shape[2]),
        },
        "vision_feature_layer": config.get("vision_feature_layer"),
        "vision_feature_select_strategy": config.get("vision_feature_select_strategy"),
        "parity": parity,
        "export_seconds": round(export_s, 1),
        "tools": {"torch": torch.__version__, "transformers": tf.__version__},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m export.vlm_vision`` and ``rap-edge export vision-tower``."""
    parser.add_argument(
        "--hf-dir",
        type=Path,
        required=True,
        help="a local Hugging Face LLaVA or Idefics3/SmolVLM folder",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default: <hf-dir>-vision beside the model)"
    )


def run(args: argparse.Namespace) -> int:
    """Export as ``args`` say; 0 on success."""
    folder = Path(args.hf_dir).expanduser()
    out = Path(args.out).expanduser() if args.out else folder.with_name(folder.name + "-vision")
    m = export(folder, out)
    print(
        f"wrote {out / ONNX_NAME}: {m['output']['tokens_per_image']} tokens x "
        f"{m['output']['hidden']} per image; parity vs torch: min cosine "
        f"{m['parity']['min_cosine']:.7f}, max abs diff {m['parity']['max_abs_diff']:.2e}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
