"""`rap-edge export rap-mllm` on a tiny random-weight checkpoint written in the LLaVA layout.

The reference is the unsplit model in torch, written here independently of the exporter: the
CLIP tower's ``hidden_states[-2][:, 1:]``, the ``mlp2x_gelu`` projector from the checkpoint's
``model.mm_projector.{0,2}`` tensors, the features put at LLaVA's ``-200`` positions of the
token embeddings (text chunks tokenized one by one, as LLaVA's ``tokenizer_image_token``), and
the Llama LM's logits. Images are padded to a square with the mean colour by PIL and
normalised by transformers' CLIP processor.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime_genai")
pytest.importorskip("safetensors")

from rap_edge.errors import InvalidInputError
from rap_edge.generate import open_backend
from rap_edge.generate._prompt import Prompt

pytestmark = pytest.mark.slow

HIDDEN, VISION_HIDDEN, SIZE = 64, 48, 32
LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. The "
    "assistant gives helpful, detailed, and polite answers to the human's questions."
)
TEXT = (
    "<image> This is the current view.\nConcepts recognised in this view:\n1. <image> "
    "Name: Ana | Category: person | Info: <<<the owner's sister>>>\n\nQuestion: Who is here?"
)
CORPUS = [
    (
        "This is the current view. Concepts recognised in this view: Name: Ana | Category: "
        "person | Info: the owner's sister. Question: Who is here? USER: ASSISTANT: A chat "
        "between a curious human and an artificial intelligence assistant."
    )
] * 10


def _write_checkpoint(root: Path):
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    src, tower = root / "rap-llava-tiny", root / "clip-tiny"
    tok = Tokenizer(models.BPE(unk_token="<unk>"))  # noqa: S106
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<unk>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    specials = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
    hf_tok.save_pretrained(src)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    lm = LlamaForCausalLM(cfg).eval()
    vcfg = CLIPVisionConfig(
        hidden_size=VISION_HIDDEN,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=SIZE,
        patch_size=8,
    )
    clip = CLIPVisionModel(vcfg).eval()
    clip.save_pretrained(tower)
    (tower / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "do_resize": True,
                "size": {"shortest_edge": SIZE},
                "do_center_crop": True,
                "crop_size": {"height": SIZE, "width": SIZE},
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "do_convert_rgb": True,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "resample": 3,
            }
        )
    )
    state = {k: v.contiguous() for k, v in lm.state_dict().items()}
    proj = {
        "model.mm_projector.0.weight": torch.randn(HIDDEN, VISION_HIDDEN) * 0.2,
        "model.mm_projector.0.bias": torch.randn(HIDDEN) * 0.1,
        "model.mm_projector.2.weight": torch.randn(HIDDEN, HIDDEN) * 0.2,
        "model.mm_projector.2.bias": torch.randn(HIDDEN) * 0.1,
    }
    save_file({**state, **proj}, str(src / "model.safetensors"), metadata={"format": "pt"})
    config = cfg.to_dict()
    config.update(
        architectures=["LlavaLlamaForCausalLM"],
        model_type="llava_llama",
        mm_vision_tower="openai/clip-vit-large-patch14-336",
        mm_hidden_size=VISION_HIDDEN,
        mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        image_aspect_ratio="pad",
        mm_use_im_start_end=False,
        mm_use_im_patch_token=False,
    )
    (src / "config.json").write_text(json.dumps(config, indent=1))
    return src, tower, lm, clip, proj, hf_tok


class Tiny:
    def __init__(self, root: Path) -> None:
        (self.src, self.tower, self.lm, self.clip, self.proj, self.tok) = _write_checkpoint(root)
        self.root = root
        import cv2

        rng = np.random.default_rng(3)
        # Non-square, so that the square padding is exercised; after padding they are
        # SIZE x SIZE, so no resampling differs between PIL and OpenCV.
        self.images = []
        for i, (h, w) in enumerate(((20, 32), (32, 24))):
            path = root / f"image{i}.png"
            cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            self.images.append(path)

    def export(self, precision: str) -> Path:
        from export import rap_mllm

        out = self.root / f"out-{precision}"
        if not out.is_dir():
            rap_mllm.export(self.src, self.tower, out, precision=precision, say=lambda _: None)
        return out

    def reference(self, text: str, images: list[Path]) -> tuple[list[int], np.ndarray]:
        """Input ids and last-token logits of the unsplit model, built independently."""
        import torch
        from PIL import Image
        from transformers import CLIPImageProcessor

        prompt = f"{LLAVA_SYSTEM} USER: {text} ASSISTANT:"
        ids: list[int] = []
        for i, chunk in enumerate(prompt.split("<image>")):
            if i:
                ids.append(-200)
            ids += self.tok(chunk, add_special_tokens=False).input_ids
        processor = CLIPImageProcessor.from_pretrained(self.tower)
        mean = tuple(int(x * 255) for x in processor.image_mean)
        squares = []
        for p in images:
            img = Image.open(p).convert("RGB")
            side = max(img.size)
            canvas = Image.new("RGB", (side, side), mean)
            canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
            squares.append(canvas)
        pixels = processor(images=squares, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            hidden = self.clip(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
            x = torch.nn.functional.linear(
                hidden,
                self.proj["model.mm_projector.0.weight"],
                self.proj["model.mm_projector.0.bias"],
            )
            feats = torch.nn.functional.linear(
                torch.nn.functional.gelu(x),
                self.proj["model.mm_projector.2.weight"],
                self.proj["model.mm_projector.2.bias"],
            )
            pieces, rows = [], iter(feats)
            table = self.lm.get_input_embeddings()
            chunk: list[int] = []
            for t in [*ids, None]:
                if t is None or t == -200:
                    if chunk:
                        pieces.append(table(torch.tensor(chunk)))
                    chunk = []
                    if t == -200:
                        pieces.append(next(rows))
                else:
                    chunk.append(t)
            embeds = torch.cat(pieces)[None]
            logits = self.lm(inputs_embeds=embeds).logits[0, -1].numpy()
        expanded = [j for t in ids for j in ([t] * feats.shape[1] if t == -200 else [t])]
        return expanded, logits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return Tiny(tmp_path_factory.mktemp("rap-mllm"))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_fp32_split_matches_the_unsplit_model(tiny: Tiny) -> None:
    out = tiny.export("fp32")
    m = json.loads((out / "rap_edge_mllm.json").read_text())
    assert m["splice"]["tokens_per_image"] == (SIZE // 8) ** 2
    assert m["splice"]["image_token_id"] == -200
    assert m["preprocess"]["pad_to_square"] and m["preprocess"]["pad_color"] == [122, 116, 104]
    assert m["parity"]["ok"] and m["parity"]["last_token_logit_cosine_to_torch_fp32"] >= 0.999
    assert m["vision"]["parity"]["min_cosine_to_torch"] >= 0.9999
    assert {"vision_projector.onnx", "embedding.onnx", "features.onnx", "model.onnx"} <= set(
        m["files"]
    )
    backend, note = open_backend("ortgenai", out, provider="cpu")
    assert backend.name == "ortgenai" and "split llava_llama" in note
    prompt = Prompt(text=TEXT, images=list(tiny.images))
    ids, want = tiny.reference(TEXT, tiny.images)
    assert backend.input_ids(prompt) == ids  # ORT GenAI's tokenizer, LLaVA's chunking
    got = backend.prefill_logits(prompt)
    cosine = _cos(got, want)
    print(f"fp32 split vs unsplit last-token logits cosine: {cosine:.7f}")
    assert cosine >= 0.999
    assert int(got.argmax()) == int(want.argmax())
    # Image order matters: swapping the query and the reference image changes the answer.
    swapped = backend.prefill_logits(Prompt(text=TEXT, images=tiny.images[::-1]))
    assert _cos(swapped, want) < cosine - 1e-6


def test_int4_split_stays_close(tiny: Tiny) -> None:
    out = tiny.export("int4")
    backend, _ = open_backend("ortgenai", out, provider="cpu")
    _, want = tiny.reference(TEXT, tiny.images)
    cosine = _cos(backend.prefill_logits(Prompt(text=TEXT, images=list(tiny.images))), want)
    print(f"int4 split vs unsplit fp32 last-token logits cosine: {cosine:.5f}")
    # Measured 0.995 on this random-weight model; a wrong splice or build is far below.
    assert 0.9 <= cosine < 0.99999
    m = json.loads((out / "rap_edge_mllm.json").read_text())
    assert m["precision"] == "int4" and m["parity"]["ok"]


def test_streams_text_and_bounds_tokens(tiny: Tiny) -> None:
    backend, _ = open_backend("ortgenai", tiny.export("fp32"), provider="cpu")
    prompt = Prompt(text=TEXT, images=list(tiny.images))
    pieces = list(backend.generate(prompt, max_tokens=6))
    assert pieces and all(isinstance(p, str) for p in pieces) and len(pieces) <= 6
    again = list(backend.generate(prompt, max_tokens=6))
    assert again == pieces  # greedy
    text_only = list(backend.generate(Prompt(text="Question: Who is here?"), max_tokens=4))
    assert text_only


def test_preprocessing_matches_the_clip_processor_on_a_resized_image(tiny: Tiny) -> None:
    import cv2
    from PIL import Image
    from transformers import CLIPImageProcessor

    backend, _ = open_backend("ortgenai", tiny.export("fp32"), provider="cpu")
    path = tiny.root / "big.png"
    rng = np.random.default_rng(9)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), (0, 0), 3)
    cv2.imwrite(str(path), smooth)
    processor = CLIPImageProcessor.from_pretrained(tiny.tower)
    img = Image.open(path).convert("RGB")
    canvas = Image.new("RGB", (90, 90), (122, 116, 104))
    canvas.paste(img, (0, 15))
    want = processor(images=[canvas], return_tensors="np")["pixel_values"][0]
    got = backend.preprocess(path)
    assert got.shape == want.shape == (3, SIZE, SIZE)
    # OpenCV's area resize is not PIL's bicubic: close on smooth images, not bit-exact.
    assert np.abs(got - want).mean() < 0.05


def test_bad_prompts_and_images_are_clear(tiny: Tiny) -> None:
    backend, _ = open_backend("ortgenai", tiny.export("fp32"), provider="cpu")
    with pytest.raises(InvalidInputError, match="2 image slots but 1 images"):
        list(backend.generate(Prompt(text=TEXT, images=tiny.images[:1])))
    with pytest.raises(InvalidInputError, match="image not found"):
        list(backend.generate(Prompt(text=TEXT, images=[tiny.images[0], Path("/nope.png")])))


def _variant(tiny: Tiny, name: str, **changes: object) -> Path:
    src = tiny.root / name
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(tiny.src, src)
    config = json.loads((src / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (src / "config.json").write_text(json.dumps(config))
    return src


def test_bad_checkpoints_are_named(tiny: Tiny, capsys: pytest.CaptureFixture[str]) -> None:
    from export import rap_mllm

    def fails(src: Path, match: str, tower: Path | None = None) -> None:
        code = rap_mllm.main(
            [
                "--src",
                str(src),
                "--vision-tower",
                str(tower or tiny.tower),
                "--out",
                str(tiny.root / "bad-out"),
                "--precision",
                "fp32",
            ]
        )
        err = capsys.readouterr().err
        assert code == 1 and match in err, err
        assert not (tiny.root / "bad-out").exists()

    fails(_variant(tiny, "no-mm", mm_vision_tower=None, mm_hidden_size=None), "not a LLaVA layout")
    fails(
        _variant(tiny, "resampler", mm_projector_type="resampler"),
        "mm_projector_type 'resampler' is not supported",
    )
    fails(
        _variant(tiny, "anyres", image_aspect_ratio="anyres"),
        "image_aspect_ratio 'anyres' is not supported",
    )
    fails(
        _variant(tiny, "qwen", model_type="qwen2", architectures=["Qwen2ForCausalLM"]),
        "is not supported",
    )
    fails(_variant(tiny, "wide", mm_hidden_size=96), "mm_hidden_size 96")
    fails(
        _variant(tiny, "deep", mm_projector_type="mlp3x_gelu"),
        "do not fit mm_projector_type 'mlp3x_gelu'",
    )
    hf = _variant(tiny, "llava-hf", text_config={}, vision_config={})
    fails(hf, "llava-hf layout")
    empty = tiny.root / "empty"
    empty.mkdir(exist_ok=True)
    fails(tiny.src, "config.json is missing", tower=empty)
    noweights = _variant(tiny, "noweights")
    (noweights / "model.safetensors").unlink()
    with pytest.raises(InvalidInputError, match="holds no weights"):
        rap_mllm.read_layout(noweights)
