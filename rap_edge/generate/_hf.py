"""The ``transformers`` backend: a local Hugging Face folder of a causal LM or a VLM.

Vision-language models (LLaVA, which the RAP-LLaVA checkpoints load as; Idefics3/SmolVLM;
Qwen2-VL) see the query image and each retrieved concept's reference image where the prompt's
``<image>`` placeholders put them. A text-only model gets the prompt with the placeholders
dropped. Decoding is greedy and streamed from a generation thread.

Folders are read with ``local_files_only``: nothing is downloaded. A folder without a chat
template gets plain text: the system part, a blank line, then the user part.
"""

from __future__ import annotations

import re
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.errors import BackendError, InvalidInputError
from rap_edge.generate._prompt import IMAGE, chat_parts
from rap_edge.generate._vision import OnnxVisionTower, route_images

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import torch
    from PIL import Image
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

    from rap_edge.generate._prompt import Prompt

__all__ = ["TransformersBackend"]

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


class TransformersBackend:
    """Greedy, streamed generation with a local transformers model (text or vision-language).

    Args:
        model_dir: The Hugging Face folder (``config.json``, weights, tokenizer or processor).
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (bfloat16 or float16 on CUDA, float32 on CPU), or ``float32``,
            ``float16``, ``bfloat16``.
        int8: Quantize the Linear layers to dynamic INT8 (CPU, float32 only).
        max_image_side: Images are downscaled so that their longer side is at most this.
        vision_onnx: A folder from ``rap-edge export vision-tower`` of this model: image
            features are then computed by ONNX Runtime (TensorRT or CUDA where usable).
        vision_provider: Execution provider for ``vision_onnx`` (``auto``, ``tensorrt``,
            ``cuda``, ``cpu``).

    Raises:
        InvalidInputError: the folder is missing, is not a model folder, holds an unsupported
            architecture, or the options are invalid.
        BackendError: torch or transformers is missing, or CUDA was asked for and is absent.
    """

    name = "transformers"

    def __init__(  # noqa: PLR0913
        self,
        model_dir: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        int8: bool = False,
        max_image_side: int = 448,
        vision_onnx: str | Path | None = None,
        vision_provider: str = "auto",
    ) -> None:
        folder = Path(model_dir)
        if not folder.is_dir():
            raise InvalidInputError(f"model folder {folder} does not exist")
        if not (folder / "config.json").is_file():
            raise InvalidInputError(
                f"{folder} has no config.json: not a Hugging Face model folder"
            )
        if max_image_side < 1:
            raise InvalidInputError(f"max_image_side must be positive, got {max_image_side}")
        try:
            import torch
            import transformers as tf
        except ImportError as err:
            msg = (
                "the transformers backend needs torch and transformers: pip install 'rap-edge[hf]'"
            )
            raise BackendError(msg) from err

        dev = _device(device)
        if int8 and dev.type != "cpu":
            raise InvalidInputError(
                f"int8 (dynamic INT8 Linear layers) runs on the CPU only, not on {dev}"
            )
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} asked for, but CUDA is not available to torch")
        self.dtype = _dtype(dtype, dev)
        if int8 and self.dtype != torch.float32:
            raise InvalidInputError(f"int8 needs float32 weights, got dtype {dtype!r}")
        try:
            config = tf.AutoConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise InvalidInputError(
                f"{folder}: unsupported or unreadable config.json: {err}"
            ) from err
        self.multimodal = getattr(config, "vision_config", None) is not None
        mapping = (
            tf.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING
            if self.multimodal
            else tf.MODEL_FOR_CAUSAL_LM_MAPPING
        )
        if type(config) not in mapping:
            kind = "vision-language" if self.multimodal else "causal language"
            raise InvalidInputError(
                f"{folder}: {config.model_type!r} is not a supported {kind} model architecture"
            )
        auto = tf.AutoModelForImageTextToText if self.multimodal else tf.AutoModelForCausalLM
        try:
            self.processor = _processor(folder, config.model_type) if self.multimodal else None
            self.tokenizer: PreTrainedTokenizerBase = (
                self.processor.tokenizer
                if self.processor is not None
                else tf.AutoTokenizer.from_pretrained(folder, local_files_only=True)
            )
            self.model: PreTrainedModel = auto.from_pretrained(
                folder, dtype=self.dtype, local_files_only=True
            )
        except ImportError as err:
            raise BackendError(f"cannot load the model in {folder}: {err}") from err
        except (OSError, ValueError) as err:
            raise InvalidInputError(f"cannot load the model in {folder}: {err}") from err
        self.model.to(dev).eval()  # type: ignore[arg-type]
        if int8:
            with warnings.catch_warnings():  # torch.ao.quantization is deprecated, still works
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
                from torch.ao.quantization import quantize_dynamic

                quantize_dynamic(
                    self.model,
                    {torch.nn.Linear},  # type: ignore[no-untyped-call]
                    dtype=torch.qint8,
                    inplace=True,
                )
        self.vision: OnnxVisionTower | None = None
        if vision_onnx is not None:
            if not self.multimodal:
                raise InvalidInputError(
                    f"{folder} is a text model: it has no vision tower to "
                    "replace with --vision-onnx"
                )
            self.vision = OnnxVisionTower(vision_onnx, model_dir=folder, provider=vision_provider)
            route_images(self.model, self.vision)
        self.device = dev
        self.folder = folder
        self.max_image_side = max_image_side
        # A processor without a template of its own may share its tokenizer's.
        template = getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template
        self.chat_template: str | None = (
            template.get("default") if isinstance(template, dict) else template
        )

    def generate(self, prompt: Prompt, *, max_tokens: int = 256) -> Iterator[str]:
        """Stream the greedy answer to ``prompt``, at most ``max_tokens`` new tokens.

        Raises:
            InvalidInputError: ``max_tokens`` < 1, the placeholders do not match the images,
                or an image cannot be read.
        """
        if max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be positive, got {max_tokens}")
        inputs = self.inputs(prompt)
        from transformers import StoppingCriteria, TextIteratorStreamer

        stop = threading.Event()  # set when the caller stops reading: generation ends early

        class _Stop(StoppingCriteria):
            def __call__(
                self, input_ids: torch.LongTensor, *_: object, **__: object
            ) -> torch.BoolTensor:
                import torch

                return torch.full(
                    (input_ids.shape[0],),
                    stop.is_set(),  # type: ignore[return-value]
                    dtype=torch.bool,
                    device=input_ids.device,
                )

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failed: list[BaseException] = []

        def run() -> None:
            try:
                self.model.generate(
                    **inputs,
                    max_new_tokens=max_tokens,
                    do_sample=False,  # type: ignore[operator]
                    streamer=streamer,
                    stopping_criteria=[_Stop()],
                )
            except BaseException as err:  # re-raised in the caller's thread  # noqa: BLE001
                failed.append(err)
                streamer.end()  # type: ignore[no-untyped-call]  # unblocks the reader

        thread = threading.Thread(target=run, name="rap-edge-hf-generate", daemon=True)
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            stop.set()
            thread.join()
        if failed:
            raise BackendError(f"generation with {self.folder} failed: {failed[0]}") from failed[0]

    def close(self) -> None:
        """Nothing to release: the model is freed with the backend, generation threads end."""

    def inputs(self, prompt: Prompt) -> Mapping[str, Any]:
        """The model inputs for ``prompt`` (token ids, and pixel values for a VLM), on device."""
        if prompt.text.count(IMAGE) != len(prompt.images):
            raise InvalidInputError(
                f"the prompt has {prompt.text.count(IMAGE)} {IMAGE} "
                f"placeholders but {len(prompt.images)} images"
            )
        system, user = chat_parts(prompt)
        batch: Mapping[str, Any]
        if self.processor is None:  # a text-only model: the text, without image placeholders
            text = self._render(system, re.sub(re.escape(IMAGE) + " ?", "", user))
            batch = self.tokenizer(
                text, return_tensors="pt", add_special_tokens=self._add_special(text)
            ).to(self.device)
        else:
            images = [_image(p, self.max_image_side) for p in prompt.images]
            text = self._render(system, user)
            batch = self.processor(
                text=text,
                images=images or None,
                return_tensors="pt",
                add_special_tokens=self._add_special(text),
            ).to(device=self.device, dtype=self.dtype)
        return batch

    def _add_special(self, text: str) -> bool:
        # As transformers does: add BOS unless the chat template already wrote it.
        bos = self.tokenizer.bos_token
        return not (isinstance(bos, str) and text.startswith(bos))

    def _render(self, system: str, user: str) -> str:
        if self.chat_template is None:
            image_token = getattr(self.processor, "image_token", IMAGE)
            return (f"{system}\n\n{user}" if system else user).replace(IMAGE, image_token)
        from jinja2 import TemplateError

        messages = [self._message("user", user)]
        try:
            return self._apply(
                [self._message("system", system), *messages] if system else messages
            )
        except TemplateError:
            if not system:
                raise
            # A template without a system role (it raises): the system text leads the user turn.
            return self._apply([self._message("user", f"{system}\n\n{user}")])

    def _message(self, role: str, text: str) -> dict[str, Any]:
        if not self.multimodal:
            return {"role": role, "content": text}
        parts: list[dict[str, str]] = []
        for i, chunk in enumerate(text.split(IMAGE)):
            if i:
                parts.append({"type": "image"})
            if chunk:
                parts.append({"type": "text", "text": chunk})
        return {"role": role, "content": parts}

    def _apply(self, messages: list[dict[str, Any]]) -> str:
        owner = self.processor if self.processor is not None else self.tokenizer
        return str(
            owner.apply_chat_template(
                messages,
                chat_template=self.chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
        )


def _device(device: str) -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise InvalidInputError(f"unknown device {device!r}: {err}") from err


def _dtype(dtype: str, dev: torch.device) -> torch.dtype:
    import torch

    if dtype == "auto":
        if dev.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in _DTYPES:
        raise InvalidInputError(
            f"dtype must be auto or one of {', '.join(_DTYPES)}, got {dtype!r}"
        )
    dt: torch.dtype = getattr(torch, _DTYPES[dtype])
    return dt


def _processor(folder: Path, model_type: str) -> ProcessorMixin:
    import transformers as tf
    from transformers.models.auto.processing_auto import (  # type: ignore[attr-defined]
        PROCESSOR_MAPPING_NAMES,
    )

    cls: Any = getattr(tf, PROCESSOR_MAPPING_NAMES.get(model_type) or "", None)
    attrs: list[str] = cls.get_attributes() if cls is not None else []
    if "video_processor" in attrs and not tf.is_torchvision_available():
        # transformers 5 builds an image+video processor (Qwen2-VL) with its video part, which
        # needs torchvision; images do not. Load it without the video part.
        image_only: Any = type(
            cls.__name__,
            (cls,),
            {
                "get_attributes": classmethod(
                    lambda _cls: [a for a in attrs if a != "video_processor"]
                )
            },
        )
        processor: ProcessorMixin = image_only.from_pretrained(folder, local_files_only=True)
    else:
        processor = tf.AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            folder, local_files_only=True
        )
    return processor


def _image(path: Path, max_side: int) -> Image.Image:
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise InvalidInputError(f"cannot read image {path}: {err}") from err
    rgb.thumbnail((max_side, max_side))  # only ever shrinks; keeps the aspect ratio
    return rgb
