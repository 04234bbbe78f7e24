"""Split a LLaVA-layout checkpoint (RAP-LLaVA, RAP-Phi3-V): vision ONNX + ORT GenAI decoder.

RAP's own checkpoints keep the original LLaVA repository layout: one causal LM whose weights
also hold the projector (``model.mm_projector.*``, ``mlp2x_gelu``), and a config that names the
CLIP vision tower (not included), the layer its features come from and square padding of
images. This splits such a checkpoint for the edge, into ``--out``:

* ``vision_projector.onnx``: CLIP vision tower (cut after the feature layer) plus projector,
  ``pixel_values [N, 3, S, S]`` to ``image_features [N, tokens, lm_hidden]`` (dynamo exporter,
  dynamic batch), checked against torch. On a Jetson it runs on TensorRT
  (``rap-edge export engine --onnx OUT/vision_projector.onnx --precision fp16``).
* the language model as an ONNX Runtime GenAI decoder at ``--precision`` built by its model
  builder with ``exclude_embeds=true`` (``model.onnx``: it takes ``inputs_embeds``), plus
  ``embedding.onnx`` (the token-embedding table and the splice: every ``-200`` in
  ``input_ids`` takes the next image-feature row) and ``features.onnx`` (an identity: the
  decoder's image input is the vision ONNX's output, computed outside ORT GenAI so that it can
  run on TensorRT). ``genai_config.json`` ties the three together as an ORT GenAI
  vision-language pipeline.
* ``rap_edge_mllm.json``: image preprocessing (CLIP processor values, expand2square padding with
  the mean colour), image tokens per image, the image order (query image, then the reference
  images, as the ``<image>`` slots of the prompt), the chat format, tool versions, file hashes
  and the parity figures.

Supported: ``llava_llama`` (LLaVA-1.5, RAP-LLaVA), ``llava_mistral`` and ``llava_phi3``
(LLaVA-Phi-3, which RAP-Phi3-V is trained from) with a ``linear`` or ``mlpNx_gelu`` projector, a
CLIP vision tower, ``patch`` or ``cls_patch`` features, ``pad`` or square images. Not
supported: ``anyres`` (LLaVA-NeXT tiling), the Hugging Face ``llava-hf`` layout (use ``rap-edge
export vision-tower`` and the ``transformers`` backend), merged-in LoRA adapters (merge them
first).

The check (CPU target, unless ``--no-check``) runs the split pipeline against the unsplit
model in torch fp32 (vision tower, projector, features spliced into the token embeddings, the
causal LM) on a prompt with a query and a reference image: last-token logits cosine. It loads
the whole LM in fp32 (about 4 bytes per parameter).

Usage:
    rap-edge export rap-mllm --src DIR --vision-tower DIR --out DIR [--precision int4]
        [--target cpu|cuda] [--chat auto|llava_v1|phi3_instruct] [--no-check]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export._common import command_main
from rap_edge.errors import BackendError, InvalidInputError, ModelStoreError
from rap_edge.eval import cosine_rows
from rap_edge.generate._split import (
    CHAT_FORMATS,
    FEATURES_ONNX,
    IMAGE_TOKEN_ID,
    MANIFEST,
    VISION_ONNX,
)
from rap_edge.models import sha256_file

if TYPE_CHECKING:
    import argparse

EMBEDDING_ONNX = "embedding.onnx"
# Below these the split pipeline is not the checkpoint it was split from (last-token logits
# cosine against torch fp32; a broken splice or build is far below).
MIN_COSINE = {"fp32": 0.999, "fp16": 0.99, "int8": 0.95, "int4": 0.9}
MIN_VISION_COSINE = 0.9999
# model_type / architecture of the LLaVA class -> (HF model_type, HF architecture, chat format)
FAMILIES = {
    "llava_llama": ("llama", "LlamaForCausalLM", "llava_v1"),
    "llava": ("llama", "LlamaForCausalLM", "llava_v1"),
    "llava_mistral": ("mistral", "MistralForCausalLM", "llava_v1"),
    "llava_phi3": ("phi3", "Phi3ForCausalLM", "phi3_instruct"),
    "llava_phi": ("phi3", "Phi3ForCausalLM", "phi3_instruct"),
}
ARCHITECTURES = {
    "LlavaLlamaForCausalLM": "llava_llama",
    "LlavaMistralForCausalLM": "llava_mistral",
    "LlavaPhiForCausalLM": "llava_phi3",
    "LlavaPhi3ForCausalLM": "llava_phi3",
}
# Config keys of the LLaVA training code that a plain causal-LM config does not carry.
_LLAVA_KEYS = (
    "image_aspect_ratio",
    "image_grid_pinpoints",
    "tune_mm_mlp_adapter",
    "freeze_mm_mlp_adapter",
    "use_mm_proj",
    "tokenizer_model_max_length",
    "tokenizer_padding_side",
    "unfreeze_mm_vision_tower",
    "mm_projector_lr",
    "mm_vision_tower_lr",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "generation_config.json",
    "chat_template.json",
    "chat_template.jinja",
)
_PROJECTOR = "model.mm_projector."
_DROPPED_PREFIXES = ("model.vision_tower.", "model.image_newline")


@dataclass
class Layout:
    """What the LLaVA-layout checkpoint says about itself."""

    src: Path
    config: dict[str, Any]
    family: str  # llava_llama, llava_mistral, llava_phi3
    hidden: int
    mm_hidden: int
    projector: str  # linear or mlpNx_gelu
    depth: int  # linear layers in the projector
    select_layer: int
    select_feature: str  # patch or cls_patch
    aspect: str  # pad or square
    im_start_end: bool
    weights: list[Path] = field(default_factory=list)


def _read_json(path: Path) -> Any:  # noqa: ANN401 - whatever the JSON holds
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InvalidInputError(f"{path} is missing") from err
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InvalidInputError(f"{path}: not readable JSON ({err})") from err


def _weight_files(src: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = src / index_name
        if index.is_file():
            shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
            missing = [s for s in shards if not (src / s).is_file()]
            if not shards or missing:
                raise InvalidInputError(
                    f"{index}: shard {missing[0] if missing else '?'} is missing"
                )
            return [src / s for s in shards]
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        files = sorted(src.glob(pattern))
        if files:
            return files
    raise InvalidInputError(f"{src} holds no weights (model*.safetensors or pytorch_model*.bin)")


def read_layout(src: Path) -> Layout:
    """Check that ``src`` is a LLaVA-layout checkpoint this exporter supports; describe it."""
    if not src.is_dir():
        raise InvalidInputError(f"--src {src} is not a folder")
    path = src / "config.json"
    config = _read_json(path)
    if not isinstance(config, dict):
        raise InvalidInputError(f"{path}: not a JSON object")
    if "text_config" in config and "vision_config" in config:
        raise InvalidInputError(
            f"{path}: this is the Hugging Face llava-hf layout (text_config + vision_config), "
            "not the original LLaVA repository layout; use `rap-edge export vision-tower` and "
            "the transformers backend for it"
        )
    if "mm_vision_tower" not in config and "mm_hidden_size" not in config:
        raise InvalidInputError(
            f"{path}: not a LLaVA layout (no mm_vision_tower / mm_hidden_size)"
        )
    kind = str(config.get("model_type", ""))
    arch = (config.get("architectures") or [""])[0]
    family = kind if kind in FAMILIES else ARCHITECTURES.get(arch, "")
    if not family:
        raise InvalidInputError(
            f"{path}: language model model_type {kind!r} / architecture {arch!r} is not "
            f"supported (supported: {', '.join(sorted(FAMILIES))})"
        )
    projector = str(config.get("mm_projector_type", "linear"))
    match = re.fullmatch(r"mlp(\d+)x_gelu", projector)
    if projector != "linear" and match is None:
        raise InvalidInputError(
            f"{path}: mm_projector_type {projector!r} is not supported (linear or mlpNx_gelu)"
        )
    depth = 1 if match is None else int(match.group(1))
    feature = str(config.get("mm_vision_select_feature", "patch"))
    if feature not in {"patch", "cls_patch"}:
        raise InvalidInputError(
            f"{path}: mm_vision_select_feature {feature!r} is not supported (patch or cls_patch)"
        )
    aspect = str(config.get("image_aspect_ratio") or "square")
    if aspect not in {"pad", "square"}:
        raise InvalidInputError(
            f"{path}: image_aspect_ratio {aspect!r} is not supported (pad "
            "or square; anyres tiling is LLaVA-NeXT)"
        )
    if str(config.get("mm_patch_merge_type", "flat")) != "flat":
        raise InvalidInputError(
            f"{path}: mm_patch_merge_type "
            f"{config['mm_patch_merge_type']!r} is not supported (flat)"
        )
    try:
        hidden, mm_hidden = int(config["hidden_size"]), int(config["mm_hidden_size"])
        select_layer = int(config.get("mm_vision_select_layer", -2))
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidInputError(f"{path}: field {err} is missing or not a number") from err
    return Layout(
        src=src,
        config=config,
        family=family,
        hidden=hidden,
        mm_hidden=mm_hidden,
        projector=projector,
        depth=depth,
        select_layer=select_layer,
        select_feature=feature,
        aspect=aspect,
        im_start_end=bool(config.get("mm_use_im_start_end", False)),
        weights=_weight_files(src),
    )


def _load_shard(path: Path) -> dict[str, Any]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise InvalidInputError(f"{path}: cannot read the weights ({err})") from err
    if not isinstance(state, dict):
        raise InvalidInputError(f"{path}: not a state dict")
    return dict(state)


def split_weights(layout: Layout, lm_dir: Path, *, say: Any = print) -> dict[str, Any]:  # noqa: ANN401
    """Write the LM without ``mm_*`` weights into ``lm_dir``; return the projector's tensors.

    One shard is in memory at a time; every shard is written as safetensors.
    """
    from safetensors.torch import save_file

    lm_dir.mkdir(parents=True, exist_ok=True)
    projector: dict[str, Any] = {}
    weight_map: dict[str, str] = {}
    dropped = 0
    n = len(layout.weights)
    for i, shard in enumerate(layout.weights, 1):
        say(f"  weights {i}/{n}: {shard.name}")
        state = _load_shard(shard)
        keep: dict[str, Any] = {}
        seen: set[int] = set()
        for key, tensor in state.items():
            if key.startswith(_PROJECTOR):
                projector[key[len(_PROJECTOR) :]] = tensor.float().clone()
            elif key.startswith(_DROPPED_PREFIXES):
                dropped += 1
            else:
                t = tensor.contiguous()
                if t.data_ptr() in seen:  # tied weights share storage; safetensors refuses
                    t = t.clone()
                seen.add(t.data_ptr())
                keep[key] = t
        name = "model.safetensors" if n == 1 else f"model-{i:05d}-of-{n:05d}.safetensors"
        save_file(keep, str(lm_dir / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keep, name))
        del state, keep
    if n > 1:
        (lm_dir / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1) + "\n"
        )
    if dropped:
        say(f"  dropped {dropped} vision-tower tensors stored in the checkpoint")
    if not projector:
        raise InvalidInputError(
            f"{layout.src}: no {_PROJECTOR}* weights in "
            f"{', '.join(p.name for p in layout.weights)}: not a LLaVA "
            "checkpoint with its projector"
        )
    return projector


def write_lm_config(layout: Layout, lm_dir: Path) -> None:
    """A plain causal-LM config (no ``mm_*`` keys) and the tokenizer files into ``lm_dir``."""
    model_type, arch, _ = FAMILIES[layout.family]
    config = {
        k: v for k, v in layout.config.items() if not k.startswith("mm_") and k not in _LLAVA_KEYS
    }
    config.update(model_type=model_type, architectures=[arch])
    (lm_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    copied = [n for n in _TOKENIZER_FILES if (layout.src / n).is_file()]
    if not {"tokenizer.json", "tokenizer.model"} & set(copied):
        raise InvalidInputError(f"{layout.src}: no tokenizer (tokenizer.json or tokenizer.model)")
    for name in copied:
        shutil.copy2(layout.src / name, lm_dir / name)


def projector_module(layout: Layout, state: dict[str, Any]) -> Any:  # noqa: ANN401 - torch
    """The projector as ``torch.nn.Sequential`` (LLaVA's indices: Linear, GELU, Linear, ...)."""
    import torch

    layers: list[Any] = [torch.nn.Linear(layout.mm_hidden, layout.hidden)]
    for _ in range(1, layout.depth):
        layers += [torch.nn.GELU(), torch.nn.Linear(layout.hidden, layout.hidden)]
    module = torch.nn.Sequential(*layers)
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    if want != have:
        raise InvalidInputError(
            f"{layout.src}: the {_PROJECTOR}* weights {have} do not fit mm_projector_type "
            f"{layout.projector!r} from mm_hidden_size {layout.mm_hidden} to hidden_size "
            f"{layout.hidden} (expected {want})"
        )
    module.load_state_dict(state)
    return module.eval()


def vision_tower(folder: Path, layout: Layout) -> tuple[Any, dict[str, Any]]:
    """The local CLIP vision tower and its preprocessing record."""
    import torch
    from transformers import CLIPVisionModel

    if not folder.is_dir():
        raise InvalidInputError(f"--vision-tower {folder} is not a folder")
    config = _read_json(folder / "config.json")
    vcfg = config.get("vision_config", config) if isinstance(config, dict) else {}
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind not in {"clip", "clip_vision_model"}:
        raise InvalidInputError(
            f"{folder / 'config.json'}: model_type {kind!r} is not a CLIP "
            "vision tower (clip or clip_vision_model)"
        )
    if int(vcfg.get("hidden_size", -1)) != layout.mm_hidden:
        raise InvalidInputError(
            f"{folder / 'config.json'}: vision hidden_size {vcfg.get('hidden_size')} != "
            f"mm_hidden_size {layout.mm_hidden} of {layout.src / 'config.json'}: not the tower "
            f"this checkpoint was trained with ({layout.config.get('mm_vision_tower')})"
        )
    proc = _read_json(folder / "preprocessor_config.json")
    model = CLIPVisionModel.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    ).eval()  # type: ignore[no-untyped-call]
    size = int(model.config.image_size)
    crop = proc.get("crop_size", size)
    crop = int(crop["height"]) if isinstance(crop, dict) else int(crop)
    sizes: dict[str, Any] | int = proc.get("size", size)
    short = (
        int(sizes["shortest_edge"] if "shortest_edge" in sizes else sizes.get("height", size))
        if isinstance(sizes, dict)
        else int(sizes)
    )
    mean = [float(x) for x in proc.get("image_mean", [0.48145466, 0.4578275, 0.40821073])]
    std = [float(x) for x in proc.get("image_std", [0.26862954, 0.26130258, 0.27577711])]
    if crop != size:
        raise InvalidInputError(
            f"{folder / 'preprocessor_config.json'}: crop_size {crop} != "
            f"the tower's image_size {size}"
        )
    pre = {
        "image_size": size,
        "resize_shortest_edge": short,
        "center_crop": crop,
        "resample": "bicubic",
        "rescale": 1 / 255,
        "mean": mean,
        "std": std,
        "channels": "RGB",
        "layout": "NCHW",
        "pad_to_square": layout.aspect == "pad",
        # LLaVA's expand2square fills with the mean colour, tuple(int(x * 255) for x in mean)
        "pad_color": [int(x * 255) for x in mean],
    }
    return model, pre


def vision_module(clip: Any, projector: Any, layout: Layout) -> Any:  # noqa: ANN401
    """CLIP cut after the feature layer, feature selection and projector, as one module."""
    import torch

    n_layers = int(clip.config.num_hidden_layers)
    index = layout.select_layer % (n_layers + 1)  # hidden_states[0] is the embeddings
    if (
        not 0
        <= layout.select_layer + (n_layers + 1 if layout.select_layer < 0 else 0)
        <= (n_layers)
    ):
        raise InvalidInputError(
            f"mm_vision_select_layer {layout.select_layer} is outside the "
            f"tower's {n_layers} layers"
        )
    vm = getattr(clip, "vision_model", clip)  # transformers 5.2x flattened it
    layers = list(vm.encoder.layers)[:index]
    skip_cls = layout.select_feature == "patch"

    class VisionProjector(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = vm.embeddings
            self.pre_layrnorm = vm.pre_layrnorm
            self.layers = torch.nn.ModuleList(layers)
            self.projector = projector

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            x = self.pre_layrnorm(self.embeddings(pixel_values))
            for layer in self.layers:
                out = layer(x, None)
                x = out[0] if isinstance(out, tuple) else out
            if skip_cls:
                x = x[:, 1:]
            return self.projector(x)  # type: ignore[no-any-return]

    return VisionProjector().eval()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(cosine_rows(a.reshape(1, -1), b.reshape(1, -1))[0])


def export_vision(module: Any, out: Path, size: int) -> dict[str, Any]:  # noqa: ANN401
    """``module`` as ONNX (dynamic batch), checked against torch; returns shapes and parity."""
    import onnxruntime as ort
    import torch

    path = out / VISION_ONNX
    batch = torch.export.Dim("batch", min=1, max=64)
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=["pixel_values"],
        output_names=["image_features"],
        dynamic_shapes={"pixel_values": {0: batch}},
        opset_version=18,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    check = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = module(check).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"pixel_values": check.numpy()})[0]
    cos = min(_cosine(w, g) for w, g in zip(want, got, strict=True))
    if cos < MIN_VISION_COSINE:
        raise ModelStoreError(f"{path}: the vision ONNX does not match torch (cosine {cos})")
    return {
        "tokens": int(want.shape[1]),
        "hidden": int(want.shape[2]),
        "parity": {
            "min_cosine_to_torch": round(cos, 7),
            "max_abs_diff": float(np.abs(want - got).max()),
            "images": 3,
        },
    }


def _dtype_of_input(model_path: Path, name: str) -> int:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    for i in graph.input:
        if i.name == name:
            return int(i.type.tensor_type.elem_type)
    raise ModelStoreError(
        f"{model_path}: the decoder has no {name} input (the builder did not "
        "honour exclude_embeds)"
    )


def write_embedding(table: np.ndarray, out: Path, dtype: int) -> None:
    """``embedding.onnx``: token embeddings with the image features spliced in at ``-200``.

    ``input_ids [B, S]`` (int64; ``-200`` marks an image position) and ``image_features [N, T,
    H]`` (float32, the images in prompt order; any rank) to ``inputs_embeds [B, S, H]``: the
    k-th ``-200`` takes the k-th feature row. With no image rows (generated tokens) it is a
    plain lookup.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    hidden = int(table.shape[1])
    np_dtypes: dict[int, type[np.floating[Any]]] = {
        TensorProto.FLOAT: np.float32,
        TensorProto.FLOAT16: np.float16,
    }
    np_dtype = np_dtypes.get(dtype)
    if np_dtype is None:
        raise ModelStoreError(f"the decoder's inputs_embeds type {dtype} is not float32/16")
    inits = [
        numpy_helper.from_array(table.astype(np_dtype), "embed_tokens"),
        numpy_helper.from_array(np.array(IMAGE_TOKEN_ID, np.int64), "image_token"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array([-1, hidden], np.int64), "rows_shape"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat_shape"),
        numpy_helper.from_array(np.zeros((1, hidden), np_dtype), "zero_row"),
        numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
    ]
    n = helper.make_node
    nodes = [
        n("Equal", ["input_ids", "image_token"], ["is_image"]),
        n("Where", ["is_image", "zero", "input_ids"], ["token_ids"]),
        n("Gather", ["embed_tokens", "token_ids"], ["text_embeds"], axis=0),
        n("Reshape", ["image_features", "rows_shape"], ["rows32"]),
        n("Cast", ["rows32"], ["rows"], to=dtype),
        n("Concat", ["rows", "zero_row"], ["rows_pad"], axis=0),
        n("Shape", ["rows_pad"], ["rows_shape_now"], start=0, end=1),
        n("Squeeze", ["rows_shape_now"], ["n_rows"]),
        n("Sub", ["n_rows", "one"], ["last_row"]),
        n("Cast", ["is_image"], ["is_image64"], to=TensorProto.INT64),
        n("Shape", ["input_ids"], ["ids_shape"]),
        n("Reshape", ["is_image64", "flat_shape"], ["is_image_flat"]),
        n("CumSum", ["is_image_flat", "zero"], ["count_flat"]),
        n("Reshape", ["count_flat", "ids_shape"], ["count"]),
        n("Sub", ["count", "one"], ["row_of"]),
        n("Min", ["row_of", "last_row"], ["row_capped"]),
        n("Where", ["is_image", "row_capped", "last_row"], ["row_index"]),
        n("Gather", ["rows_pad", "row_index"], ["image_embeds"], axis=0),
        n("Unsqueeze", ["is_image", "last_axis"], ["is_image3"]),
        n("Where", ["is_image3", "image_embeds", "text_embeds"], ["inputs_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rap_edge_embedding",
        [
            helper.make_tensor_value_info(
                "input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]
            ),
            # any rank: ORT GenAI passes [N, T, H] with images, an empty rank-2 tensor without
            helper.make_tensor_value_info("image_features", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info(
                "inputs_embeds", dtype, ["batch_size", "sequence_length", hidden]
            )
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="rap-edge"
    )
    model.ir_version = 9
    big = table.size * np.dtype(np_dtype).itemsize > 1_500_000_000  # noqa: PLR2004
    onnx.save_model(
        model,
        str(out / EMBEDDING_ONNX),
        save_as_external_data=big,
        location=EMBEDDING_ONNX + ".data",
    )


def write_features(out: Path, hidden: int) -> None:
    """``features.onnx``: identity; ORT GenAI's image input is the vision ONNX's output."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixel_values"], ["image_features"])],
        "rap_edge_features",
        [
            helper.make_tensor_value_info(
                "pixel_values", TensorProto.FLOAT, ["num_images", "image_tokens", hidden]
            )
        ],
        [
            helper.make_tensor_value_info(
                "image_features", TensorProto.FLOAT, ["num_images", "image_tokens", hidden]
            )
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="rap-edge"
    )
    model.ir_version = 9
    onnx.save_model(model, str(out / FEATURES_ONNX))


def build_decoder(lm_dir: Path, out: Path, *, precision: str, target: str) -> None:
    """The ORT GenAI model builder with ``exclude_embeds=true`` (in a child process)."""
    with tempfile.TemporaryDirectory(prefix="rap-edge-builder-") as cache:
        cmd = [
            sys.executable,
            "-m",
            "onnxruntime_genai.models.builder",
            "-i",
            str(lm_dir),
            "-o",
            str(out),
            "-p",
            precision,
            "-e",
            target,
            "-c",
            cache,
            "--extra_options",
            "exclude_embeds=true",
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    if proc.returncode != 0 or not (out / "genai_config.json").is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ModelStoreError(f"the ORT GenAI builder failed on {lm_dir}:\n{tail}")


def write_genai_config(out: Path) -> None:
    """Turn the builder's decoder-only config into a vision-language pipeline.

    ORT GenAI 0.18 cannot feed ``inputs_embeds`` to a decoder-only model (``llama`` wants
    ``input_ids``); its vision-language pipelines can. The ``gemma3`` pipeline is the one whose
    parts are generic (``pixel_values`` -> vision -> ``image_features``; ``input_ids`` +
    ``image_features`` -> embedding -> ``inputs_embeds``; decoder), so the split model is
    declared as one, with ``features.onnx`` as its vision part and ``embedding.onnx`` as its
    embedding part. The decoder itself is the builder's, unchanged.
    """
    path = out / "genai_config.json"
    config = _read_json(path)
    model = config["model"]
    model["type"] = "gemma3"
    model["image_token_id"] = IMAGE_TOKEN_ID
    options = model["decoder"].get("session_options", {})
    model["vision"] = {
        "filename": FEATURES_ONNX,
        "session_options": options,
        "inputs": {"pixel_values": "pixel_values"},
        "outputs": {"image_features": "image_features"},
    }
    model["embedding"] = {
        "filename": EMBEDDING_ONNX,
        "session_options": options,
        "inputs": {"input_ids": "input_ids", "image_features": "image_features"},
        "outputs": {"inputs_embeds": "inputs_embeds"},
    }
    path.write_text(json.dumps(config, indent=4) + "\n")


def _tokenizer_facts(lm_dir: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True)
    probe = tok("a").input_ids
    bos = tok.bos_token_id
    return {
        "bos_token_id": bos,
        "add_bos": bool(bos is not None and probe[:1] == [bos]),
        "eos_token": tok.eos_token,
    }


def check(out: Path, lm_dir: Path, vision: Any, precision: str) -> dict[str, Any]:  # noqa: ANN401
    """Split pipeline against the unsplit model in torch fp32 (last-token logits)."""
    import cv2
    import torch
    from transformers import AutoModelForCausalLM

    from rap_edge.generate._prompt import Prompt
    from rap_edge.generate._split import SplitVLMBackend

    backend = SplitVLMBackend(out, provider="cpu")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="rap-edge-check-") as tmp:
        images = []
        for i, (h, w) in enumerate(((48, 64), (64, 40))):
            p = Path(tmp) / f"img{i}.png"
            cv2.imwrite(str(p), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            images.append(p)
        prompt = Prompt(
            text="<image> This is the current view.\n1. <image> Name: Ana | "
            "Category: person\n\nQuestion: Who is here?",
            images=images,
        )
        ids = backend.input_ids(prompt)
        pixels = np.stack([backend.preprocess(p) for p in images])
        got = backend.prefill_logits(prompt)
    lm = AutoModelForCausalLM.from_pretrained(
        lm_dir, dtype=torch.float32, local_files_only=True
    ).eval()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        feats = vision(torch.from_numpy(pixels)).reshape(-1, lm.config.hidden_size)
        ids_t = torch.tensor(ids)
        embeds = lm.get_input_embeddings()(ids_t.clamp(min=0))
        embeds[ids_t == IMAGE_TOKEN_ID] = feats
        want = lm(inputs_embeds=embeds[None]).logits[0, -1].numpy()
    cos = _cosine(want, got)
    floor = MIN_COSINE[precision]
    return {
        "ok": cos >= floor,
        "last_token_logit_cosine_to_torch_fp32": round(cos, 6),
        "same_argmax": bool(int(want.argmax()) == int(got.argmax())),
        "required_cosine": floor,
        "prompt_tokens": len(ids),
        "images": 2,
    }


def export(
    src: Path,
    vision_dir: Path,
    out: Path,
    *,
    precision: str = "int4",
    target: str = "cpu",
    chat: str = "auto",
    run_check: bool = True,
    say: Any = print,  # noqa: ANN401
) -> dict[str, Any]:
    """Split ``src`` into ``out`` (vision ONNX, ORT GenAI decoder, embedding, manifest)."""
    import onnxruntime as ort
    import onnxruntime_genai as og
    import torch
    import transformers

    start = time.perf_counter()
    say(f"[1/6] reading {src} ...")
    layout = read_layout(src)
    chat_format = FAMILIES[layout.family][2] if chat == "auto" else chat
    if chat_format not in CHAT_FORMATS:
        raise InvalidInputError(f"unknown chat format {chat!r}")
    say(
        f"  {layout.family}, projector {layout.projector}, feature layer "
        f"{layout.select_layer} ({layout.select_feature}), images {layout.aspect}, "
        f"{len(layout.weights)} weight file(s)"
    )
    clip, pre = vision_tower(vision_dir, layout)
    tmp = out.with_name(out.name + ".partial")
    lm_dir = out.with_name(out.name + ".lm-hf")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(lm_dir, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        say(f"[2/6] language model without mm_* weights -> {lm_dir} ...")
        projector_state = split_weights(layout, lm_dir, say=say)
        write_lm_config(layout, lm_dir)
        projector = projector_module(layout, projector_state)
        say("[3/6] vision tower + projector -> ONNX, checked against torch ...")
        vision = vision_module(clip, projector, layout)
        vinfo = export_vision(vision, tmp, pre["image_size"])
        say(
            f"  {vinfo['tokens']} tokens per image, cosine "
            f"{vinfo['parity']['min_cosine_to_torch']}"
        )
        say(f"[4/6] ORT GenAI {precision} ({target}) decoder with exclude_embeds ...")
        build_decoder(lm_dir, tmp, precision=precision, target=target)
        dtype = _dtype_of_input(tmp / "model.onnx", "inputs_embeds")
        say("[5/6] token embeddings + image splice -> embedding.onnx ...")
        from safetensors import safe_open

        table = None
        for f in sorted(lm_dir.glob("*.safetensors")):
            with safe_open(str(f), "pt") as st:
                if "model.embed_tokens.weight" in st.keys():  # noqa: SIM118 - not a dict
                    table = st.get_tensor("model.embed_tokens.weight").float().numpy()
        if table is None:
            raise InvalidInputError(f"{src}: no model.embed_tokens.weight in the weights")
        write_embedding(table, tmp, dtype)
        write_features(tmp, layout.hidden)
        write_genai_config(tmp)
        facts = _tokenizer_facts(lm_dir)
        manifest: dict[str, Any] = {
            "name": out.name,
            "task": "vlm",
            "format": "rap-edge-split-vlm",
            "version": 1,
            "family": layout.family,
            "precision": precision,
            "target": target,
            "source": {
                "src": str(src),
                "config_sha256": sha256_file(src / "config.json"),
                "weights": {p.name: sha256_file(p) for p in layout.weights},
                "vision_tower": str(vision_dir),
                "mm_vision_tower": layout.config.get("mm_vision_tower"),
            },
            "vision": {
                "file": VISION_ONNX,
                "input": "pixel_values",
                "output": "image_features",
                "tokens_per_image": vinfo["tokens"],
                "hidden": vinfo["hidden"],
                "select_layer": layout.select_layer,
                "select_feature": layout.select_feature,
                "projector": layout.projector,
                "parity": vinfo["parity"],
            },
            "preprocess": pre,
            "splice": {
                "placeholder": "<image>",
                "image_token_id": IMAGE_TOKEN_ID,
                "tokens_per_image": vinfo["tokens"],
                "order": "images in the order of the prompt's <image> slots: the query image "
                "first, then each kept concept's reference image",
                "im_start_end": layout.im_start_end,
                "im_start": "<im_start>" if layout.im_start_end else None,
                "im_end": "<im_end>" if layout.im_start_end else None,
                "tokenize": "each text chunk between image slots is tokenized on its own "
                "(LLaVA's tokenizer_image_token); one BOS at the start",
            },
            "chat": {"format": chat_format, **CHAT_FORMATS[chat_format], **facts},
            "files": {},
            "tools": {
                "onnxruntime_genai": og.__version__,
                "onnxruntime": ort.__version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        parity: dict[str, Any] = {"ok": None, "note": f"not checked here (target {target})"}
        if run_check and target == "cpu":
            say("[6/6] split pipeline against the unsplit model in torch fp32 ...")
            parity = check(tmp, lm_dir, vision, precision)
            say(
                f"  last-token logits cosine {parity['last_token_logit_cosine_to_torch_fp32']}"
                f" (required {parity['required_cosine']})"
            )
            if not parity["ok"]:
                raise ModelStoreError(
                    f"the split {precision} pipeline does not match the checkpoint: {parity}"
                )
        elif not run_check:
            parity["note"] = "not checked (--no-check)"
        manifest["parity"] = parity
        manifest["files"] = {
            p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.suffix in {".onnx", ".data"}
        }
        manifest["build_seconds"] = round(time.perf_counter() - start, 1)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(lm_dir, ignore_errors=True)
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--src",
        type=Path,
        required=True,
        help="LLaVA-layout checkpoint folder (config.json with mm_*, weights "
        "with model.mm_projector.*, tokenizer)",
    )
    parser.add_argument(
        "--vision-tower",
        type=Path,
        required=True,
        help="local CLIP vision folder (e.g. clip-vit-large-patch14-336)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--precision", default="int4", choices=["int4", "int8", "fp16", "fp32"])
    parser.add_argument("--target", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--chat",
        default="auto",
        choices=["auto", *CHAT_FORMATS],
        help="conversation format (auto: llava_v1, phi3_instruct for Phi-3)",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip the logits check against torch fp32 (it loads the LM in fp32)",
    )


def run(args: argparse.Namespace) -> int:
    if args.precision == "fp16" and args.target == "cpu":
        msg = "fp16 needs --target cuda (the CPU builds int4, int8 or fp32)"
        raise InvalidInputError(msg)
    try:
        m = export(
            args.src,
            args.vision_tower,
            args.out,
            precision=args.precision,
            target=args.target,
            chat=args.chat,
            run_check=not args.no_check,
        )
    except ImportError as err:
        msg = f"the split export needs the `export` extra (torch, transformers, onnx): {err}"
        raise BackendError(msg) from err
    print(
        f"wrote {args.out}: {m['family']} {m['precision']} for {m['target']}, "
        f"{m['vision']['tokens_per_image']} tokens per image, parity {m['parity']}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
