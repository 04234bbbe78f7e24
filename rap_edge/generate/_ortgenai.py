"""The ``ortgenai`` backend: ONNX Runtime GenAI models (INT4 on a CPU, CUDA on a Jetson).

A model folder is what the ORT GenAI model builder writes (``genai_config.json``, the ONNX
decoder, the tokenizer); ``python -m export.llm`` builds the default one, SmolLM2-135M INT4.

Text models get the prompt through their own chat template (system, then user). Multimodal
models that ORT GenAI runs itself (Phi-3/3.5-vision, Phi-4-multimodal, Qwen2.5-VL, Gemma 3)
get the images through its multimodal processor, each ``<image>`` slot of the prompt rewritten
into the model's own image tag, so the query image and the concepts' reference images reach
the model in the prompt's order.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.generate._prompt import IMAGE, chat_parts
from rap_edge.runtime import LLM_PROVIDERS, Provider

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rap_edge.generate._prompt import Prompt

__all__ = ["OrtGenAIBackend", "genai_config"]

# How each multimodal model type of ORT GenAI spells "an image goes here" (i counts from 1).
_IMAGE_TAGS = {
    "phi3v": "<|image_{i}|>",
    "phi4mm": "<|image_{i}|>",
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "fara": "<|vision_start|><|image_pad|><|vision_end|>",
    "gemma3": "<start_of_image>",
}


def _import_og() -> Any:  # noqa: ANN401 - the onnxruntime_genai module
    try:
        import onnxruntime_genai as og
    except ImportError as err:
        msg = (
            "the ortgenai backend needs ONNX Runtime GenAI: pip install 'rap-edge[llm]' "
            "(onnxruntime-genai-cuda on a Jetson)"
        )
        raise ModelStoreError(msg) from err
    return og


def genai_config(folder: str | Path, *, provider: str = "auto", threads: int | None = None) -> Any:  # noqa: ANN401 - an og.Config
    """The folder's ORT GenAI configuration with the provider and thread count applied."""
    asked = Provider.parse(provider, allowed=LLM_PROVIDERS, what="LLM provider")
    og = _import_og()
    if threads is None:
        threads = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    if not 1 <= threads <= 256:  # noqa: PLR2004
        msg = f"threads must be 1..256, got {threads}"
        raise InvalidInputError(msg)
    config = og.Config(str(folder))
    config.overlay(
        json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}})
    )
    if asked is not Provider.AUTO:
        config.clear_providers()
        if asked is Provider.CUDA:
            config.append_provider("cuda")
    return config


class OrtGenAIBackend:
    """Streams answers from an ORT GenAI model folder.

    Args:
        model_dir: The builder's output folder (with ``genai_config.json``).
        provider: ``cpu``, ``cuda``, or ``auto`` (the folder's own configuration).
        max_length: Cap on prompt plus answer tokens.
        repetition_penalty: 1.0 (off) by default: on 60 scenes SmolLM2-135M with 1.1 needed
            the guard's retry 28 times and its template 17 times, without it 12 and 6.
        threads: Intra-op threads for the decoder (None: every core this process may use).
            Left to itself ONNX Runtime GenAI used one core of two here (SmolLM2-135M INT4:
            100 tok/s and 0.53 s to read a 150-token prompt; with both cores 152 tok/s and
            0.32 s). Next to a camera loop on a small CPU, 1 leaves it a core.
    """

    name = "ortgenai"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        provider: str = "auto",
        max_length: int = 4096,
        repetition_penalty: float = 1.0,
        threads: int | None = None,
    ) -> None:
        folder = Path(model_dir)
        config_path = folder / "genai_config.json"
        if not config_path.is_file():
            msg = (
                f"{folder} is not an ONNX Runtime GenAI model folder (no genai_config.json);"
                " build one with `python -m export.llm`"
            )
            raise ModelStoreError(msg)
        try:
            self.model_type = str(json.loads(config_path.read_text())["model"]["type"])
        except (ValueError, KeyError, TypeError) as err:
            msg = f"{config_path} is malformed: {err}"
            raise ModelStoreError(msg) from err
        self._og, self.model = load_model(folder, provider=provider, threads=threads)
        og = self._og
        self.folder = folder
        self.max_length = max_length
        self.search = {"do_sample": False, "repetition_penalty": repetition_penalty}
        self.tokenizer = og.Tokenizer(self.model)
        self.multimodal = self.model_type in _IMAGE_TAGS
        self.processor = og.MultiModalProcessor(self.model) if self.multimodal else None
        # One generator at a time per model: the worker is single-threaded, but the CLI's
        # `ask` and a worker could share a backend.
        self._lock = threading.Lock()

    def _text(self, prompt: Prompt) -> str:
        system, user = chat_parts(prompt)
        if self.multimodal:
            if user.count(IMAGE) != len(prompt.images):
                msg = (
                    f"the prompt has {user.count(IMAGE)} image slots but "
                    f"{len(prompt.images)} images"
                )
                raise InvalidInputError(msg)
            tag = _IMAGE_TAGS[self.model_type]
            pieces = user.split(IMAGE)
            user = pieces[0] + "".join(tag.format(i=i) + p for i, p in enumerate(pieces[1:], 1))
        else:  # a text model reads the scene; the image slots go
            user = user.replace(f"{IMAGE} ", "").replace(IMAGE, "")
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        return str(
            self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
        )

    def generate(self, prompt: Prompt, *, max_tokens: int = 256) -> Iterator[str]:
        """Stream the greedy answer to ``prompt``, piece by piece."""
        og = self._og
        text = self._text(prompt)
        with self._lock:
            params = og.GeneratorParams(self.model)
            if self.processor is not None and prompt.images:
                missing = [str(p) for p in prompt.images if not Path(p).is_file()]
                if missing:
                    msg = f"image not found: {missing[0]}"
                    raise InvalidInputError(msg)
                inputs = self.processor(
                    text, images=og.Images.open(*[str(p) for p in prompt.images])
                )
                n_prompt = int(inputs["input_ids"].shape()[-1])
                params.set_search_options(
                    max_length=min(self.max_length, n_prompt + max_tokens), **self.search
                )
                generator = og.Generator(self.model, params)
                generator.set_inputs(inputs)
                stream = self.processor.create_stream()
            else:
                ids = self.tokenizer.encode(text)
                if len(ids) >= self.max_length:
                    msg = (
                        f"the prompt is {len(ids)} tokens; this model takes at most "
                        f"{self.max_length}"
                    )
                    raise InvalidInputError(msg)
                params.set_search_options(
                    max_length=min(self.max_length, len(ids) + max_tokens), **self.search
                )
                generator = og.Generator(self.model, params)
                generator.append_tokens(ids)
                stream = self.tokenizer.create_stream()
            try:
                yield from stream_pieces(generator, stream)
            finally:
                del generator  # released under the lock, also when the reader stops early

    def close(self) -> None:
        """Nothing to release: the model is freed with the backend (no process or thread stays)."""


def stream_pieces(generator: Any, stream: Any) -> Iterator[str]:  # noqa: ANN401 - og objects
    """Decode ``generator``'s tokens until it is done, yielding each non-empty text piece.

    A reader that stops (closes the stream) stops generation between two tokens.
    """
    while not generator.is_done():
        generator.generate_next_token()
        piece = stream.decode(int(generator.get_next_tokens()[0]))
        if piece:
            yield piece


def load_model(folder: Path, *, provider: str, threads: int | None) -> tuple[Any, Any]:
    """``(onnxruntime_genai, og.Model)`` for a builder folder, as :func:`genai_config` sets it.

    Raises:
        ModelStoreError: ONNX Runtime GenAI is not installed, or it cannot load the folder.
    """
    og = _import_og()
    config = genai_config(folder, provider=provider, threads=threads)
    try:
        return og, og.Model(config)
    except Exception as err:  # onnxruntime_genai raises plain RuntimeErrors
        msg = f"ONNX Runtime GenAI cannot load {folder}: {err}"
        raise ModelStoreError(msg) from err
