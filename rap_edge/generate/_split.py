"""Split vision-language models: a vision ONNX plus an ORT GenAI decoder on input embeddings.

``rap-edge export rap-mllm`` turns a LLaVA-layout checkpoint (RAP-LLaVA, RAP-Phi3-V) into a
folder with ``rap_edge_mllm.json``; :class:`SplitVLMBackend` runs it as the ``ortgenai``
backend (``open_backend("ortgenai", model=DIR)`` picks it when the manifest is there):

1. the prompt's text goes into the checkpoint's conversation format; each chunk of text
   between two ``<image>`` slots is tokenized on its own (as LLaVA does) and every slot becomes
   ``tokens_per_image`` copies of the image token id ``-200``;
2. each image is padded to a square with the mean colour (LLaVA's ``expand2square``), resized,
   normalised, and run through ``vision_projector.onnx`` (vision tower plus projector) with
   ONNX Runtime, on TensorRT or CUDA where available (:func:`rap_edge.runtime.create_session`);
3. ORT GenAI runs the rest as a vision-language pipeline: ``embedding.onnx`` looks the tokens
   up and puts the k-th image-feature row at the k-th ``-200``, and the builder's INT4 decoder
   reads those embeddings; generated tokens go through the same embedding. Greedy, streamed.

The images are used in the order of the prompt's slots: the query image, then the reference
images of the retrieved concepts (RAP's layout, see :func:`rap_edge.generate.build_prompt`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.generate._ortgenai import load_model, stream_pieces
from rap_edge.generate._prompt import IMAGE, chat_parts

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rap_edge.generate._prompt import Prompt

__all__ = [
    "CHAT_FORMATS",
    "FEATURES_ONNX",
    "IMAGE_TOKEN_ID",
    "MANIFEST",
    "VISION_ONNX",
    "SplitVLMBackend",
    "is_split_model",
]

MANIFEST = "rap_edge_mllm.json"
VISION_ONNX = "vision_projector.onnx"
FEATURES_ONNX = "features.onnx"
IMAGE_TOKEN_ID = -200  # LLaVA's IMAGE_TOKEN_INDEX
FORMAT = "rap-edge-split-vlm"
# The conversation formats of the LLaVA code base (llava/conversation.py) for one user turn.
CHAT_FORMATS: dict[str, dict[str, str]] = {
    "llava_v1": {
        "template": "{system} USER: {user} ASSISTANT:",
        "default_system": "A chat between a curious human and an artificial intelligence "
        "assistant. The assistant gives helpful, detailed, and polite "
        "answers to the human's questions.",
    },
    "phi3_instruct": {
        "template": "<|system|>\n{system}<|end|>\n<|user|>\n{user}<|end|>\n<|assistant|>\n",
        "default_system": "You are a helpful AI assistant.",
    },
}


def is_split_model(folder: str | Path) -> bool:
    """Whether ``folder`` holds a split vision-language model (``rap_edge_mllm.json``)."""
    return (Path(folder) / MANIFEST).is_file()


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        msg = f"{path}: not readable ({err})"
        raise ModelStoreError(msg) from err
    if not isinstance(m, dict):
        msg = f"{path}: not a JSON object"
        raise ModelStoreError(msg)
    try:
        if m["format"] != FORMAT:
            msg = f"{path}: format {m['format']!r} is not {FORMAT!r}"
            raise ModelStoreError(msg)
        m["chat"]["template"].split("{user}")
        int(m["splice"]["tokens_per_image"])
        m["preprocess"]["mean"]
        m["vision"]["file"]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        msg = f"{path}: malformed ({type(err).__name__}: {err})"
        raise ModelStoreError(msg) from err
    return m


def _read_image(path: Path) -> np.ndarray:
    import cv2

    if not Path(path).is_file():
        msg = f"image not found: {path}"
        raise InvalidInputError(msg)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        msg = f"cannot read image {path}"
        raise InvalidInputError(msg)
    return np.ascontiguousarray(image[:, :, ::-1])  # RGB


class SplitVLMBackend:
    """Streams answers from a split vision-language model folder (``rap_edge_mllm.json``).

    Args:
        model_dir: The folder ``rap-edge export rap-mllm`` wrote.
        provider: ``cpu``, ``cuda``, or ``auto``: the decoder's provider as for
            :class:`~rap_edge.generate.OrtGenAIBackend`; the vision ONNX takes TensorRT, then
            CUDA, then the CPU (``cpu`` keeps it on the CPU).
        max_length: Cap on prompt plus answer tokens (and the model's context length).
        threads: Intra-op threads for the decoder and the vision ONNX on a CPU.
    """

    name = "ortgenai"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        provider: str = "auto",
        max_length: int = 4096,
        threads: int | None = None,
    ) -> None:
        from rap_edge.runtime import Provider, create_session

        folder = Path(model_dir)
        self.manifest = m = _manifest(folder)
        if not (folder / "genai_config.json").is_file():
            msg = f"{folder} has {MANIFEST} but no genai_config.json: an incomplete export"
            raise ModelStoreError(msg)
        self._og, self.model = load_model(folder, provider=provider, threads=threads)
        self.tokenizer = self._og.Tokenizer(self.model)
        self.folder = folder
        self.model_type = f"split {m.get('family', 'vlm')}"
        try:
            context = int(
                json.loads((folder / "genai_config.json").read_text())["model"]["context_length"]
            )
        except (OSError, ValueError, KeyError, TypeError):
            context = max_length
        self.max_length = min(max_length, context)
        self.tokens_per_image = int(m["splice"]["tokens_per_image"])
        self.session, self.vision_provider = create_session(
            folder / str(m["vision"]["file"]),
            provider=Provider.CPU if provider == Provider.CPU else Provider.AUTO,
            threads=threads or 0,
            model_sha256=m.get("files", {}).get(m["vision"]["file"]),
            precision="fp16",
        )
        pre = m["preprocess"]
        self._mean = np.asarray(pre["mean"], np.float32)
        self._std = np.asarray(pre["std"], np.float32)
        self._lock = threading.Lock()

    # -- inputs -----------------------------------------------------------------------------

    def chat_text(self, prompt: Prompt) -> str:
        """The prompt in the checkpoint's conversation format (``<image>`` slots kept)."""
        system, user = chat_parts(prompt)
        chat = self.manifest["chat"]
        if user.count(IMAGE) + system.count(IMAGE) != len(prompt.images):
            msg = (
                f"the prompt has {prompt.text.count(IMAGE)} image slots but "
                f"{len(prompt.images)} images"
            )
            raise InvalidInputError(msg)
        before, _, after = str(chat["template"]).partition("{user}")
        text = before.replace("{system}", system or str(chat["default_system"])) + user + after
        splice = self.manifest["splice"]
        if splice.get("im_start_end"):
            text = text.replace(IMAGE, f"{splice['im_start']}{IMAGE}{splice['im_end']}")
        return text

    def input_ids(self, prompt: Prompt) -> list[int]:
        """Token ids of the prompt, each image slot as ``tokens_per_image`` ids ``-200``."""
        chat = self.manifest["chat"]
        bos = chat.get("bos_token_id")
        ids: list[int] = [int(bos)] if chat.get("add_bos") and bos is not None else []
        for i, chunk in enumerate(self.chat_text(prompt).split(IMAGE)):
            if i:
                ids += [IMAGE_TOKEN_ID] * self.tokens_per_image
            if not chunk:
                continue
            toks = [int(t) for t in self.tokenizer.encode(chunk)]
            if toks and bos is not None and toks[0] == int(bos):
                toks = toks[1:]  # one BOS, at the start (LLaVA's tokenizer_image_token)
            ids += toks
        return ids

    def preprocess(self, path: Path) -> np.ndarray:
        """One image as ``[3, S, S]`` float32: pad to a square, resize, crop, normalise.

        The resize is OpenCV's (cubic up, area down), close to but not bit-exact with the CLIP
        processor's PIL bicubic.
        """
        import cv2

        pre = self.manifest["preprocess"]
        image = _read_image(path)
        h, w = image.shape[:2]
        if pre.get("pad_to_square") and h != w:
            side = max(h, w)
            canvas = np.empty((side, side, 3), np.uint8)
            canvas[:] = np.asarray(pre["pad_color"], np.uint8)
            top, left = (side - h) // 2, (side - w) // 2
            canvas[top : top + h, left : left + w] = image
            image, h, w = canvas, side, side
        short = int(pre["resize_shortest_edge"])
        if min(h, w) != short:
            scale = short / min(h, w)
            nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
            image = cv2.resize(
                image, (nw, nh), interpolation=(cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
            )
            h, w = nh, nw
        crop = int(pre["center_crop"])
        if h < crop or w < crop:
            msg = f"image {path} is smaller than the crop ({crop}) after resizing"
            raise InvalidInputError(msg)
        top, left = (h - crop) // 2, (w - crop) // 2
        image = image[top : top + crop, left : left + crop]
        x = image.astype(np.float32) * np.float32(pre.get("rescale", 1 / 255))
        x = (x - self._mean) / self._std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def image_features(self, images: list[Path]) -> np.ndarray:
        """``[N, tokens, hidden]`` features of ``images`` (vision tower plus projector)."""
        batch = np.stack([self.preprocess(p) for p in images]).astype(np.float32)
        vision = self.manifest["vision"]
        out = self.session.run(
            [vision.get("output", "image_features")], {vision.get("input", "pixel_values"): batch}
        )[0]
        return np.ascontiguousarray(np.asarray(out, dtype=np.float32))

    # -- decoding ---------------------------------------------------------------------------

    def _generator(self, prompt: Prompt, max_tokens: int) -> Any:  # noqa: ANN401 - og.Generator
        og = self._og
        ids = self.input_ids(prompt)
        if len(ids) >= self.max_length:
            msg = f"the prompt is {len(ids)} tokens; this model takes at most {self.max_length}"
            raise InvalidInputError(msg)
        features = self.image_features(list(prompt.images)) if prompt.images else None
        params = og.GeneratorParams(self.model)
        params.set_search_options(
            max_length=min(self.max_length, len(ids) + max_tokens), do_sample=False
        )
        generator = og.Generator(self.model, params)
        inputs = og.NamedTensors()
        inputs["input_ids"] = np.asarray([ids], dtype=np.int32)
        if features is not None:
            inputs["pixel_values"] = features  # features.onnx hands them on unchanged
            # ORT GenAI 0.18 sizes the image-feature buffer [images, sum of this, hidden]:
            # give the per-image count once
            inputs["num_image_tokens"] = np.array([features.shape[1]], np.int64)
        generator.set_inputs(inputs)
        return generator

    def prefill_logits(self, prompt: Prompt) -> np.ndarray:
        """The next-token logits after reading ``prompt`` (for parity checks)."""
        with self._lock:
            generator = self._generator(prompt, 1)
            try:
                return np.asarray(generator.get_logits(), dtype=np.float32).reshape(-1)
            finally:
                del generator

    def generate(self, prompt: Prompt, *, max_tokens: int = 256) -> Iterator[str]:
        """Stream the greedy answer to ``prompt``, piece by piece."""
        if max_tokens < 1:
            msg = f"max_tokens must be at least 1, got {max_tokens}"
            raise InvalidInputError(msg)
        with self._lock:
            generator = self._generator(prompt, max_tokens)
            stream = self.tokenizer.create_stream()
            try:
                yield from stream_pieces(generator, stream)
            finally:
                del generator  # released under the lock, also when the reader stops early

    def close(self) -> None:
        """Nothing to release: the models are freed with the backend (no process or thread)."""
