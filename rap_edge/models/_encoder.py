"""Image encoders run through ONNX Runtime, configured entirely by their manifest."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models._manifest import ModelManifest, load_manifest
from rap_edge.models._session import open_session
from rap_edge.sources._normalize import check_bgr_image

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import numpy.typing as npt

    from rap_edge.models._manifest import Preprocess
    from rap_edge.runtime import Provider

__all__ = ["Encoder", "preprocess"]


def _resize(img: npt.NDArray[np.uint8], pre: Preprocess) -> npt.NDArray[np.uint8]:
    """Resize (and centre-crop) one image to the model's height x width."""
    import cv2

    h, w = img.shape[:2]
    if pre.resize == "stretch":
        new_w, new_h = pre.width, pre.height
    else:
        # Shortest edge to resize_shortest, the other truncated as Hugging Face's
        # get_resize_output_image_size does; then the centre crop (top/left rounded down).
        short = pre.resize_shortest
        new_w, new_h = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    flag = cv2.INTER_CUBIC if pre.interpolation == "bicubic" else cv2.INTER_LINEAR
    if pre.antialias and new_w < w and new_h < h:
        flag = cv2.INTER_AREA
    resized = np.asarray(cv2.resize(img, (new_w, new_h), interpolation=flag), dtype=np.uint8)
    if pre.resize == "stretch":
        return resized
    top, left = (new_h - pre.height) // 2, (new_w - pre.width) // 2
    return resized[top : top + pre.height, left : left + pre.width]


def preprocess(
    images: Sequence[npt.NDArray[np.uint8]], manifest: ModelManifest
) -> npt.NDArray[np.float32]:
    """Turn BGR uint8 images [H, W, 3] into the model's input batch, as the manifest says.

    Resizing uses OpenCV (``INTER_LINEAR`` or ``INTER_CUBIC``), which does not antialias like
    PIL when it shrinks: exporters measure the end-to-end difference to their reference
    preprocessing and record it in the manifest's ``parity``.
    """
    pre = manifest.preprocess
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    out = np.empty((len(images), pre.height, pre.width, 3), dtype=np.float32)
    for i, img in enumerate(images):
        resized = _resize(check_bgr_image(img, f"image #{i + 1}"), pre)
        if pre.color == "RGB":
            resized = resized[:, :, ::-1]
        out[i] = resized
    out *= pre.scale
    out -= mean
    out /= std
    if pre.layout == "NCHW":
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    return out


class Encoder:
    """An image embedder from an exported model (implements the memory's ``Embedder``)."""

    def __init__(
        self,
        manifest: ModelManifest | str | Path,
        *,
        provider: Provider | str = "auto",
        batch_size: int = 8,
        check_hash: bool = True,
    ) -> None:
        """Load the model a manifest describes.

        Args:
            manifest: A manifest or the path of its JSON file.
            provider: Execution provider (``auto``, ``tensorrt``, ``cuda``, ``cpu``).
            batch_size: Images per inference call.
            check_hash: Verify the ONNX file against the manifest's SHA-256 first.

        Raises:
            ModelStoreError: if the model file is missing, damaged or does not match.
        """
        self.manifest = (
            manifest if isinstance(manifest, ModelManifest) else load_manifest(manifest)
        )
        m = self.manifest
        if not 1 <= batch_size <= 256:  # noqa: PLR2004
            msg = f"batch_size must be in 1..256, got {batch_size}"
            raise InvalidInputError(msg)
        self.batch_size = batch_size
        if m.task != "embed":
            msg = f"{m.path}: task {m.task!r} is not an image embedder"
            raise ModelStoreError(msg)
        self._session, self.provider, _ = open_session(
            m, provider=provider, check_hash=check_hash, outputs=[m.output_name], check_dim=True
        )

    @property
    def encoder_id(self) -> str:
        """Stable id of the vectors (from the manifest)."""
        return self.manifest.encoder_id

    @property
    def dim(self) -> int:
        """Output vector length."""
        return self.manifest.dim

    def embed(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Embed BGR uint8 images; returns float32 [len(images), dim], batched internally."""
        if not len(images):
            return np.empty((0, self.dim), dtype=np.float32)
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = preprocess(images[start : start + self.batch_size], self.manifest)
            (out,) = self._session.run(
                [self.manifest.output_name], {self.manifest.input_name: batch}
            )
            chunks.append(np.asarray(out, dtype=np.float32).reshape(len(batch), -1))
        return np.concatenate(chunks)
