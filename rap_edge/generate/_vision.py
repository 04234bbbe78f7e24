"""A VLM's image side through ONNX Runtime (and so TensorRT or CUDA), for the transformers backend.

``rap-edge export vision-tower`` writes the vision tower plus connector of a LLaVA or Idefics3
model as one ONNX file. :func:`route_images` makes a loaded transformers model compute its image
features with that file instead of its own modules; the language model is untouched. The
manifest's hash of the model's ``config.json`` must match, so a tower exported from another
model is refused rather than silently mixed in.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.errors import InvalidInputError, ModelStoreError

if TYPE_CHECKING:
    import torch

    from rap_edge.runtime import Provider

__all__ = ["OnnxVisionTower", "route_images"]

MANIFEST = "rap_edge_vision.json"


class OnnxVisionTower:
    """``pixel_values [N, 3, H, W]`` to ``image_features [N, tokens, hidden]`` with ONNX Runtime.

    Args:
        folder: The export's folder (``vision.onnx`` and ``rap_edge_vision.json``).
        model_dir: The Hugging Face folder of the VLM it must belong to.
        provider: Execution provider (``auto``: TensorRT, CUDA, CPU, whichever is usable).

    Attributes:
        provider: The provider the session really runs on.
        calls: Batches run through ONNX Runtime so far.

    Raises:
        ModelStoreError: the folder is not such an export, its file does not match its hash,
            or it was exported from a different model.
    """

    def __init__(
        self, folder: str | Path, *, model_dir: str | Path, provider: Provider | str = "auto"
    ) -> None:
        from rap_edge.models import sha256_file
        from rap_edge.runtime import create_session

        self.folder = Path(folder)
        path = self.folder / MANIFEST
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
            onnx = self.folder / str(m["onnx"])
            self.size = int(m["input"]["shape"][2])
            self.model_type = str(m["model_type"])
            expected_config, expected_onnx = str(m["source_config_sha256"]), str(m["onnx_sha256"])
        except FileNotFoundError as err:
            msg = (
                f"{self.folder} is not a vision-tower export (no {MANIFEST}); make one with "
                "`rap-edge export vision-tower --hf-dir MODEL`"
            )
            raise ModelStoreError(msg) from err
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            raise ModelStoreError(f"{path}: malformed vision-tower manifest ({err})") from err
        config = Path(model_dir) / "config.json"
        if not config.is_file() or sha256_file(config) != expected_config:
            msg = (
                f"{self.folder} was exported from another model than {model_dir} (its "
                "config.json differs); export the vision tower of this model"
            )
            raise ModelStoreError(msg)
        if not onnx.is_file() or sha256_file(onnx) != expected_onnx:
            raise ModelStoreError(f"{onnx}: missing or does not match the hash in {path}")
        self._session, self.provider = create_session(
            onnx, provider=provider, model_sha256=expected_onnx
        )
        self.calls = 0

    def __call__(self, pixel_values: np.ndarray) -> np.ndarray:
        """Image features of a batch of processed images (float32)."""
        pixels = np.ascontiguousarray(pixel_values, dtype=np.float32)
        if pixels.ndim != 4 or pixels.shape[1:] != (3, self.size, self.size):  # noqa: PLR2004
            msg = (
                f"the vision tower takes pixel values [N, 3, {self.size}, {self.size}], "
                f"got {list(pixels.shape)}"
            )
            raise InvalidInputError(msg)
        (out,) = self._session.run(["image_features"], {"pixel_values": pixels})
        self.calls += 1
        return np.asarray(out, dtype=np.float32)


def route_images(model: Any, tower: OnnxVisionTower) -> None:  # noqa: ANN401 - a transformers VLM
    """Make ``model`` compute image features with ``tower`` (LLaVA and Idefics3/SmolVLM).

    Idefics3 images whose pixel mask is not all ones (padded regions) or whose size differs
    from the export's go through the model's own modules, as before.
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    inner = model.model
    original = inner.get_image_features
    if tower.model_type != model.config.model_type:
        msg = (
            f"the vision tower is for {tower.model_type!r}, the model is "
            f"{model.config.model_type!r}"
        )
        raise ModelStoreError(msg)

    def features(pixels: torch.Tensor) -> torch.Tensor:
        out = tower(pixels.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(out).to(pixels.device, inner.dtype)

    # ``generate`` inspects this method's signature: the replacements keep the original's.
    @functools.wraps(original)
    def llava(pixel_values: torch.Tensor, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        if args or kwargs.get("image_sizes") is not None:
            return original(pixel_values, *args, **kwargs)
        # A list of per-image tensors, as the model's own method returns.
        return BaseModelOutputWithPooling(pooler_output=list(features(pixel_values)))  # type: ignore[arg-type]

    @functools.wraps(original)
    def idefics3(
        pixel_values: torch.Tensor,
        pixel_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,  # noqa: ANN401
    ) -> Any:  # noqa: ANN401
        batch, images = pixel_values.shape[:2]
        flat = pixel_values.reshape(batch * images, *pixel_values.shape[2:])
        real = (flat != 0).flatten(1).any(1)  # the processor pads with all-zero images
        mask = (
            None
            if pixel_attention_mask is None
            else pixel_attention_mask.reshape(batch * images, *pixel_attention_mask.shape[2:])[
                real
            ]
        )
        if flat.shape[-2:] != (tower.size, tower.size) or (mask is not None and not mask.all()):
            return original(pixel_values, pixel_attention_mask, **kwargs)
        feats = features(flat[real])
        per_sample = real.reshape(batch, images).sum(1).tolist()
        return BaseModelOutputWithPooling(
            pooler_output=[
                f.reshape(-1, f.shape[-1])  # type: ignore[arg-type]
                for f in feats.split(per_sample)  # type: ignore[no-untyped-call]
            ]
        )

    inner.get_image_features = llava if tower.model_type == "llava" else idefics3
