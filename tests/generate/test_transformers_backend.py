"""The ``transformers`` backend on tiny models built here: LLaVA, Idefics3, Qwen2-VL and Llama.

The models have random weights (fixed seed) and an offline byte-level tokenizer, so they prove
plumbing, not quality: where the image tokens land, in which order the reference images reach
the model, streaming, ``max_tokens`` and the errors. Each model's output head is zeroed, so
greedy decoding always picks token 0 (a newline): what a model says is known in advance.
Everything is local (``local_files_only``, HF_HUB_OFFLINE=1); nothing is downloaded.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

import torch
import transformers
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from rap_edge.errors import BackendError, InvalidInputError
from rap_edge.generate import ConceptRef, Prompt, build_prompt
from rap_edge.generate._hf import TransformersBackend
from rap_edge.generate._prompt import SYSTEM, chat_parts

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SPECIAL = [
    "<unk>",
    "<s>",
    "</s>",
    "<pad>",
    "<image>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_end|>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
]
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
VLMS = ["llava", "idefics3", "qwen2vl"]
ROLES = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def chatml(image: str, *, system_role: bool = True) -> str:
    """A ChatML template that writes ``image`` for an image part, as the real templates do."""
    no_system = "{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    return (
        "{% for m in messages %}"
        + ("" if system_role else no_system)
        + "<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
        + image
        + "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def make_tokenizer(template: str | None) -> Any:
    """Byte-level BPE without merges (one token per byte) plus the special tokens; id 0 = \\n."""
    chars = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda c: c != "Ċ")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({t: len(chars) + i for i, t in enumerate(SPECIAL)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=ROLES["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **ROLES)
    fast.chat_template = template
    return fast


def text_config(tok: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }


def save(model: Any, processor: Any, folder: Path) -> Path:
    model.get_output_embeddings().weight.data.zero_()  # greedy always picks token 0
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_llama(folder: Path, template: str | None = chatml("")) -> Path:
    torch.manual_seed(0)
    tok = make_tokenizer(template)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**text_config(tok)))
    return save(model, tok, folder)


def build_llava(folder: Path) -> Path:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.manual_seed(0)
    tok = make_tokenizer(None)
    vision = transformers.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=28,
        patch_size=14,
        projection_dim=32,
    )
    config = transformers.LlavaConfig(
        vision_config=vision,
        text_config=transformers.LlamaConfig(**text_config(tok)),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=4,
        vision_feature_layer=-1,
    )
    images = CLIPImageProcessorPil(
        size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}
    )
    processor = transformers.LlavaProcessor(
        image_processor=images,
        tokenizer=tok,
        patch_size=14,
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
        chat_template=chatml("<image>"),
    )
    return save(transformers.LlavaForConditionalGeneration(config), processor, folder)


def build_idefics3(folder: Path) -> Path:
    from transformers.models.idefics3.image_processing_pil_idefics3 import (
        Idefics3ImageProcessorPil,
    )

    torch.manual_seed(0)
    tok = make_tokenizer(None)
    vision = transformers.Idefics3VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=28,
        patch_size=14,
    )
    config = transformers.Idefics3Config(
        vision_config=vision,
        text_config=transformers.LlamaConfig(**text_config(tok)),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    images = Idefics3ImageProcessorPil(
        size={"longest_edge": 28}, do_image_splitting=False, max_image_size={"longest_edge": 28}
    )
    # image_seq_len = (28 / 14) ** 2 / scale_factor ** 2 = 1 token per image.
    processor = transformers.Idefics3Processor(
        image_processor=images, tokenizer=tok, image_seq_len=1, chat_template=chatml("<image>")
    )
    return save(transformers.Idefics3ForConditionalGeneration(config), processor, folder)


def build_qwen2vl(folder: Path) -> Path:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    torch.manual_seed(0)
    tok = make_tokenizer(None)
    ids = tok.convert_tokens_to_ids
    vision = {
        "depth": 2,
        "embed_dim": 32,
        "hidden_size": 32,
        "num_heads": 4,
        "mlp_ratio": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    text = {**text_config(tok), "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]}}
    config = transformers.Qwen2VLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    images = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=28 * 28)  # 1 token/image
    # Qwen2VLProcessor insists on a video processor, which needs torchvision (absent here);
    # the backend loads the saved folder without one, as it must do on such machines.
    image_only = type(
        "Qwen2VLProcessor",
        (transformers.Qwen2VLProcessor,),
        {"get_attributes": classmethod(lambda _cls: ["image_processor", "tokenizer"])},
    )
    processor = image_only(
        image_processor=images,
        tokenizer=tok,
        chat_template=chatml("<|vision_start|><|image_pad|><|vision_end|>"),
    )
    return save(transformers.Qwen2VLForConditionalGeneration(config), processor, folder)


BUILDERS = {
    "llava": build_llava,
    "idefics3": build_idefics3,
    "qwen2vl": build_qwen2vl,
    "llama": build_llama,
}


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> TransformersBackend:
    folder = BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    return TransformersBackend(folder)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = {}
    for name, rgb in COLOURS.items():
        paths[name] = folder / f"{name}.png"
        Image.new("RGB", (32, 32), rgb).save(paths[name])
    return paths


def rap_prompt(
    images: dict[str, Path], scores: tuple[float, float, float] = (0.9, 0.8, 0.7)
) -> Prompt:
    """Query image red; Ana green, Bo blue, Mug yellow, ranked by ``scores``."""
    concepts = [
        ConceptRef("Ana", "person", "likes tea", scores[0], "left", images["green"]),
        ConceptRef("Bo", "dog", "steals socks", scores[1], "", images["blue"]),
        ConceptRef("Mug", "mug", "chipped", scores[2], "right", images["yellow"]),
    ]
    return build_prompt(
        "Who is here?", concepts, query_image=images["red"], multimodal=True, image_tokens=16
    )


def forward_calls(
    backend: TransformersBackend, prompt: Prompt, max_tokens: int
) -> tuple[list[dict[str, Any]], str]:
    """The keyword arguments of each forward call during generation, and the answer."""
    calls: list[dict[str, Any]] = []
    handle = backend.model.register_forward_pre_hook(
        lambda _m, _a, kwargs: calls.append(kwargs), with_kwargs=True
    )
    try:
        text = "".join(backend.generate(prompt, max_tokens=max_tokens))
    finally:
        handle.remove()
    return calls, text


def pixel_inputs(
    backend: TransformersBackend, prompt: Prompt, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """What the vision encoder got (pixel values, Qwen2-VL's grid) for the prompt's images.

    transformers encodes the images before the first forward pass, through the base model's
    ``get_image_features``; the wrapper keeps its signature, which ``generate`` inspects.
    """
    seen: list[dict[str, Any]] = []
    encode = backend.model.base_model.get_image_features

    @functools.wraps(encode)
    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return encode(*args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(backend.model.base_model, "get_image_features", spy)
        calls, _ = forward_calls(backend, prompt, 1)
    seen += [c for c in calls if c.get("pixel_values") is not None]  # older transformers
    assert len(seen) == 1
    return seen[0]


def blocks(ids: list[int], image_id: int) -> tuple[int, list[list[int]]]:
    """The number of runs of ``image_id`` and the token runs between them."""
    n, segments = 0, [[]]
    for i, t in enumerate(ids):
        if t == image_id:
            if i == 0 or ids[i - 1] != image_id:
                n += 1
                segments.append([])
        else:
            segments[-1].append(t)
    return n, segments


def colours(backend: TransformersBackend, kwargs: dict[str, Any]) -> list[str]:
    """The colour name of each image in the pixel values a forward call got, in order."""
    pv = kwargs["pixel_values"].float()
    proc = backend.processor.image_processor
    mean, std = torch.tensor(proc.image_mean), torch.tensor(proc.image_std)
    if "image_grid_thw" in kwargs:  # Qwen2-VL: rows of flattened patches, channel first
        per_patch = pv.reshape(pv.shape[0], 3, -1).mean(-1)
        counts = kwargs["image_grid_thw"].prod(-1).tolist()
        rgb = torch.stack([p.mean(0) for p in per_patch.split(counts)])
    else:  # (images, 3, H, W); Idefics3 has a batch axis in front
        rgb = pv.reshape(-1, 3, *pv.shape[-2:]).mean((-2, -1))
    names = []
    for row in ((rgb * std + mean) * 255).tolist():
        name, ref = min(
            COLOURS.items(),
            key=lambda kv: sum(abs(a - b) for a, b in zip(kv[1], row, strict=True)),
        )
        assert max(abs(a - b) for a, b in zip(ref, row, strict=True)) < 8, row
        names.append(name)
    return names


@pytest.mark.parametrize("backend", VLMS, indirect=True)
def test_image_token_blocks_follow_the_prompt(
    backend: TransformersBackend, images: dict[str, Path]
) -> None:
    prompt = rap_prompt(images)
    assert backend.multimodal
    calls, _ = forward_calls(backend, prompt, 1)
    ids = calls[0]["input_ids"][0].tolist()
    n, segments = blocks(ids, backend.model.config.image_token_id)
    assert n == len(prompt.images) == 4
    texts = [backend.tokenizer.decode(s) for s in segments]
    assert SYSTEM in texts[0]
    # Before the query image and between it and concept 1's image: no concept record.
    assert "Name:" not in texts[0] and "Name:" not in texts[1]
    # After each reference image comes that concept's record, in ranked order.
    for text, concept in zip(texts[2:], prompt.concepts, strict=True):
        assert text.split("Name: ")[1].startswith(concept.name)
    assert [c.name for c in prompt.concepts] == ["Ana", "Bo", "Mug"]
    assert "Who is here?" in texts[-1]


@pytest.mark.parametrize("backend", VLMS, indirect=True)
def test_reference_images_reach_the_model_in_prompt_order(
    backend: TransformersBackend, images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    got = pixel_inputs(backend, rap_prompt(images), monkeypatch)
    assert colours(backend, got) == ["red", "green", "blue", "yellow"]
    swapped = rap_prompt(images, scores=(0.8, 0.9, 0.7))  # Bo now outranks Ana
    assert [c.name for c in swapped.concepts] == ["Bo", "Ana", "Mug"]
    got = pixel_inputs(backend, swapped, monkeypatch)
    assert colours(backend, got) == ["red", "blue", "green", "yellow"]


@pytest.mark.parametrize("backend", [*VLMS, "llama"], indirect=True)
def test_generation_streams_and_max_tokens_bounds_it(
    backend: TransformersBackend, images: dict[str, Path]
) -> None:
    prompt = rap_prompt(images)
    # The second forward pass waits until the first piece has been read: a backend that
    # yielded only after generating everything would wait for the timeout, and fail.
    done: list[int] = []
    release, timed_out = threading.Event(), []

    def hold(*_: Any) -> None:
        if done and not release.wait(5):
            timed_out.append(True)
            release.set()

    pre = backend.model.register_forward_pre_hook(hold)
    post = backend.model.register_forward_hook(lambda *_: done.append(1))
    try:
        stream = backend.generate(prompt, max_tokens=5)
        first = next(stream)
        done_at_first = len(done)
        release.set()
        rest = list(stream)
    finally:
        pre.remove()
        post.remove()
    assert first == "\n" and done_at_first == 1 and not timed_out
    assert first + "".join(rest) == "\n" * 5 and len(done) == 5
    assert forward_calls(backend, prompt, 1)[1] == "\n"


@pytest.mark.parametrize("backend", ["llama"], indirect=True)
def test_closing_the_stream_stops_generation(backend: TransformersBackend) -> None:
    calls: list[int] = []

    def slow(*_: Any) -> None:
        calls.append(1)
        time.sleep(0.01)

    handle = backend.model.register_forward_pre_hook(slow)
    try:
        stream = backend.generate(build_prompt("Who?", []), max_tokens=200)
        assert next(stream) == "\n"
        stream.close()  # returns once the generation thread has stopped
        stopped_at = len(calls)
        time.sleep(0.05)
    finally:
        handle.remove()
    assert stopped_at == len(calls) < 50


def test_text_model_drops_image_placeholders(tmp_path: Path, images: dict[str, Path]) -> None:
    backend = TransformersBackend(build_llama(tmp_path / "llama"))
    assert not backend.multimodal and backend.processor is None
    prompt = rap_prompt(images)
    text = backend.tokenizer.decode(backend.inputs(prompt)["input_ids"][0])
    assert "<image>" not in text and "Name: Ana" in text and "Name: Mug" in text
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert list(backend.generate(prompt, max_tokens=3)) == ["\n"] * 3
    scene = build_prompt("Who is here?", [ConceptRef("Ana", "person", "likes tea", 0.9)])
    assert "".join(backend.generate(scene, max_tokens=2)) == "\n\n"


def test_template_without_system_role_and_no_template(tmp_path: Path) -> None:
    scene = build_prompt("Who is here?", [ConceptRef("Ana", "person", "likes tea", 0.9)])
    system, user = chat_parts(scene)
    assert system == SYSTEM
    no_system = TransformersBackend(build_llama(tmp_path / "a", chatml("", system_role=False)))
    text = no_system.tokenizer.decode(no_system.inputs(scene)["input_ids"][0])
    assert text == f"<|im_start|>user\n{system}\n\n{user}<|im_end|>\n<|im_start|>assistant\n"
    plain = TransformersBackend(build_llama(tmp_path / "b", None))
    assert plain.tokenizer.decode(plain.inputs(scene)["input_ids"][0]) == scene.text
    assert "".join(plain.generate(scene, max_tokens=2)) == "\n\n"


def test_int8_on_cpu(tmp_path: Path, images: dict[str, Path]) -> None:
    backend = TransformersBackend(build_llava(tmp_path / "llava"), int8=True)
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert any(isinstance(m, dynamic) for m in backend.model.modules())
    assert not any(type(m) is torch.nn.Linear for m in backend.model.modules())
    assert "".join(backend.generate(rap_prompt(images), max_tokens=3)) == "\n\n\n"


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        TransformersBackend(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"empty has no config\.json"):
        TransformersBackend(tmp_path / "empty")
    for model_type, match in [
        ("vit", "'vit' is not a supported causal language model"),
        ("no-such-model", "unsupported or unreadable config"),
    ]:
        (tmp_path / model_type).mkdir()
        (tmp_path / model_type / "config.json").write_text(f'{{"model_type": "{model_type}"}}')
        with pytest.raises(InvalidInputError, match=match):
            TransformersBackend(tmp_path / model_type)


def test_option_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = build_llama(tmp_path / "llama")
    with pytest.raises(InvalidInputError, match="CPU only"):
        TransformersBackend(folder, device="cuda", int8=True)
    with pytest.raises(InvalidInputError, match="float32"):
        TransformersBackend(folder, dtype="fp16", int8=True)
    with pytest.raises(InvalidInputError, match="dtype must be"):
        TransformersBackend(folder, dtype="int4")
    with pytest.raises(InvalidInputError, match="unknown device"):
        TransformersBackend(folder, device="gpu0")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BackendError, match=r"pip install 'rap-edge\[hf\]'"):
        TransformersBackend(folder)


@pytest.mark.parametrize("backend", ["llava"], indirect=True)
def test_prompt_errors(
    backend: TransformersBackend, images: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="2 <image> placeholders but 1 images"):
        list(backend.generate(Prompt(text="<image> and <image>?", images=[images["red"]])))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    for path in (bad, tmp_path / "missing.png"):
        prompt = build_prompt(
            "Who?",
            [ConceptRef("Ana", "person", "", 0.9, "", path)],
            query_image=images["red"],
            multimodal=True,
        )
        with pytest.raises(InvalidInputError, match=f"cannot read image .*{path.name}"):
            list(backend.generate(prompt))
    with pytest.raises(InvalidInputError, match="max_tokens"):
        list(backend.generate(rap_prompt(images), max_tokens=0))


@pytest.mark.parametrize("backend", ["llama"], indirect=True)
def test_a_failed_generation_raises_instead_of_hanging(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(**_: Any) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(backend.model, "generate", boom)
    raised: list[BaseException] = []

    def consume() -> None:
        try:
            list(backend.generate(build_prompt("Who?", [])))
        except BackendError as err:
            raised.append(err)

    reader = threading.Thread(target=consume, daemon=True)  # a hang fails, not blocks, the run
    reader.start()
    reader.join(10)
    assert not reader.is_alive()
    assert len(raised) == 1 and "out of memory" in str(raised[0])
