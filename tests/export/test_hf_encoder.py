"""Hugging Face encoder export: tiny random-weight CLIP, SigLIP and DINOv2 folders built offline.

Random weights test the plumbing and the parity of the conversion, not retrieval quality.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnx")

from export import hf_encoder
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.memory import Memory
from rap_edge.models import Encoder, TextEncoder, load_manifest, preprocess

if TYPE_CHECKING:
    from pathlib import Path

    from rap_edge.models import ModelManifest

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
TEXT = {
    "vocab_size": 300,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 16,
}
VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
PAD, BOS, EOS = 0, 1, 2


def _tokenizer(folder: Path, *, bos: bool) -> None:
    """A byte-level BPE trained in milliseconds, saved as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))  # noqa: S106 - a token, not a password
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TEXT["vocab_size"],
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(
        [
            "a photo of a red mug",
            "my dog asleep on the sofa",
            "a person wearing glasses",
            "the kitchen table",
        ]
        * 10,
        trainer,
    )
    # CLIP wraps ids in BOS ... EOS; SigLIP appends EOS only.
    single = "<s> $A </s>" if bos else "$A </s>"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("<s>", BOS), ("</s>", EOS)]
    )
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    }
    PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=TEXT["max_position_embeddings"], **specials
    ).save_pretrained(folder)


def _build(kind: str, folder: Path) -> Path:
    import torch
    import transformers
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    torch.manual_seed(0)
    ids = {"pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS}
    if kind == "clip":
        model = transformers.CLIPModel(
            transformers.CLIPConfig(
                text_config={**TEXT, **ids}, vision_config=VISION, projection_dim=24
            )
        )
        processor = CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
    elif kind == "siglip":
        model = transformers.SiglipModel(
            transformers.SiglipConfig(text_config={**TEXT, **ids}, vision_config=VISION)
        )
        processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    else:
        model = transformers.Dinov2Model(transformers.Dinov2Config(**VISION))
        processor = BitImageProcessorPil(
            size={"shortest_edge": 36},
            crop_size={"height": 32, "width": 32},
            image_mean=IMAGENET_MEAN,
            image_std=IMAGENET_STD,
        )
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    if kind != "dinov2":
        _tokenizer(folder, bos=kind == "clip")
    return folder


def photo_like(seed: int) -> np.ndarray:
    """A BGR 'scene': sky and floor gradients, a few objects, sensor noise."""
    rng = np.random.default_rng(seed)
    h, w = 120 + 20 * seed, 160 + 10 * seed
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (200, 160, 90)
    img[h // 2 :] = (60, 90, 120)
    for _ in range(5):
        x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(
            img, (x, y), (x + int(rng.integers(10, 60)), y + int(rng.integers(10, 60))), colour, -1
        )
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf")


@pytest.fixture(scope="module")
def calib_dir(root: Path) -> Path:
    folder = root / "calib"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"frame{i}.jpg"), photo_like(i))
    return folder


@pytest.fixture(scope="module")
def clip(root: Path) -> tuple[Path, dict[str, hf_encoder.Exported]]:
    """CLIP through the command line (fp32)."""
    folder = _build("clip", root / "tiny-clip")
    out = root / "out"
    assert hf_encoder.main(["--hf-dir", str(folder), "--out", str(out)]) == 0
    image = load_manifest(out / "hf-clip-tiny-clip.json")
    text = load_manifest(out / "hf-clip-tiny-clip.text.json")
    return folder, {"fp32": hf_encoder.Exported("fp32", image, text)}


@pytest.fixture(scope="module")
def siglip(root: Path, calib_dir: Path) -> tuple[Path, dict[str, hf_encoder.Exported]]:
    """SigLIP in all three precisions from one fp32 export (the library call)."""
    folder = _build("siglip", root / "tiny-siglip")
    calibration = hf_encoder.load_calibration(str(calib_dir))
    results = hf_encoder.export(
        folder,
        root / "out",
        precisions=("fp32", "fp16", "int8"),
        calibration=calibration,
        say=lambda _: None,
    )
    return folder, {r.precision: r for r in results}


@pytest.fixture(scope="module")
def dinov2(root: Path) -> tuple[Path, dict[str, hf_encoder.Exported]]:
    folder = _build("dinov2", root / "tiny-dinov2")
    (result,) = hf_encoder.export(folder, root / "out", say=lambda _: None)
    return folder, {"fp32": result}


@pytest.fixture(params=["clip", "siglip", "dinov2"])
def exported(request: pytest.FixtureRequest) -> tuple[Path, dict[str, hf_encoder.Exported]]:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_fp32_parity_image_and_text(exported: tuple[Path, dict[str, hf_encoder.Exported]]) -> None:
    _, results = exported
    fp32 = results["fp32"]
    assert fp32.image.path is not None
    parity = load_manifest(fp32.image.path).parity
    assert parity["ok"]
    assert parity["min_cosine"] >= 0.9999
    assert parity["required_min_cosine"] == 0.9999
    e2e = parity["end_to_end"]
    assert "skipped" not in e2e, e2e
    assert -1.0 <= e2e["min_cosine"] <= 1.0
    if fp32.text is not None:
        assert fp32.text.parity["min_cosine"] >= 0.9999
        n = len(hf_encoder.SAMPLE_TEXTS)
        assert fp32.text.parity["tokenization_equal"] == f"{n}/{n}"
        assert fp32.text.dim == fp32.image.dim
        assert fp32.text.extra["image_encoder_id"] == fp32.image.encoder_id


@pytest.mark.slow
def test_manifest_preprocessing_is_the_folders(
    exported: tuple[Path, dict[str, hf_encoder.Exported]],
) -> None:
    folder, results = exported
    config = json.loads((folder / "preprocessor_config.json").read_text())
    image = results["fp32"].image
    pre = load_manifest(image.onnx.with_suffix(".json")).preprocess
    assert pre.mean == pytest.approx(config["image_mean"])
    assert pre.std == pytest.approx(config["image_std"])
    assert pre.scale == pytest.approx(config["rescale_factor"])
    assert pre.interpolation == {2: "bilinear", 3: "bicubic"}[config["resample"]]
    if "shortest_edge" in config["size"]:
        assert pre.resize == "shortest_center_crop"
        assert pre.resize_shortest == config["size"]["shortest_edge"]
        assert (pre.height, pre.width) == (
            config["crop_size"]["height"],
            config["crop_size"]["width"],
        )
    else:
        assert pre.resize == "stretch"
        assert (pre.height, pre.width) == (config["size"]["height"], config["size"]["width"])


def test_preprocessing_of_each_family(
    clip: tuple[Path, dict[str, hf_encoder.Exported]],
    siglip: tuple[Path, dict[str, hf_encoder.Exported]],
    dinov2: tuple[Path, dict[str, hf_encoder.Exported]],
) -> None:
    c = clip[1]["fp32"].image.preprocess
    s = siglip[1]["fp32"].image.preprocess
    d = dinov2[1]["fp32"].image.preprocess
    assert (c.resize, c.interpolation, c.mean) == (
        "shortest_center_crop",
        "bicubic",
        pytest.approx(OPENAI_MEAN),
    )
    assert (s.resize, s.mean, s.std) == ("stretch", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert (d.resize, d.resize_shortest, d.height, d.mean) == (
        "shortest_center_crop",
        36,
        32,
        pytest.approx(IMAGENET_MEAN),
    )


def test_centre_crop_matches_the_hugging_face_geometry(
    dinov2: tuple[Path, dict[str, hf_encoder.Exported]],
) -> None:
    """An upscaled image (no resampler differences to speak of) lands on the same pixels."""
    from PIL import Image
    from transformers import AutoImageProcessor

    folder, results = dinov2
    manifest = results["fp32"].image
    # Smooth ramps: bicubic in OpenCV and PIL differ by their kernel only (a=-0.75 vs -0.5).
    y, x = np.mgrid[0:18, 0:30].astype(np.float32)
    img = np.stack([x * 8, y * 12, x * 4 + y * 6], axis=-1).astype(np.uint8)
    ours = preprocess([img], manifest)
    processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    want = processor(images=[Image.fromarray(img[:, :, ::-1].copy())], return_tensors="np")[
        "pixel_values"
    ]
    assert ours.shape == want.shape == (1, 3, 32, 32)
    assert np.abs(ours - want).mean() < 0.02


@pytest.mark.slow
def test_encoders_embed_images_and_text_into_one_space(
    clip: tuple[Path, dict[str, hf_encoder.Exported]],
) -> None:
    result = clip[1]["fp32"]
    assert result.text is not None
    vectors = Encoder(result.image.onnx.with_suffix(".json"), provider="cpu").embed(
        [photo_like(7), photo_like(8)]
    )
    assert vectors.shape == (2, result.image.dim) == (2, 24)
    assert np.isfinite(vectors).all()
    text = TextEncoder(result.text.onnx.with_suffix(".json"), provider="cpu")
    assert text.image_encoder_id == result.image.encoder_id
    queries = text.embed(["a red mug", "a dog", "a red mug"])
    assert queries.shape == (3, 24)
    np.testing.assert_allclose(queries[0], queries[2], rtol=0, atol=1e-6)
    assert not np.allclose(queries[0], queries[1])


@pytest.mark.slow
def test_fp16_and_int8_variants_report_their_accuracy(
    siglip: tuple[Path, dict[str, hf_encoder.Exported]],
) -> None:
    results = siglip[1]
    fp16, int8 = results["fp16"], results["int8"]
    assert fp16.image.parity["ok"]
    assert fp16.image.parity["min_cosine"] >= 0.999
    assert fp16.image.encoder_id.replace("-fp16@", "-fp32@") == results["fp32"].image.encoder_id
    assert fp16.text is not None
    assert fp16.text.parity["min_cosine"] >= 0.999
    assert fp16.text.extra["image_encoder_id"] == fp16.image.encoder_id
    parity = load_manifest(int8.image.onnx.with_suffix(".json")).parity
    assert parity["quantization"] == "qdq"
    assert parity["calibration_images"] == 14  # half the 28 crops of 4 images
    assert 0.0 < parity["min_cosine_to_fp32"] <= parity["mean_cosine_to_fp32"] <= 1.0
    assert 0 <= parity["nearest_neighbour_changes"] <= parity["crops"] == 28
    assert int8.image.encoder_id.endswith(results["fp32"].image.encoder_id.split("@")[1])
    assert "-int8qdq@" in int8.image.encoder_id
    assert int8.text is not None
    assert int8.text.extra["image_encoder_id"] == int8.image.encoder_id
    assert int8.text.parity["required_min_cosine"] is None
    assert -1.0 <= int8.text.parity["min_cosine"] <= 1.0
    vectors = Encoder(int8.image.onnx.with_suffix(".json"), provider="cpu").embed([photo_like(1)])
    assert vectors.shape == (1, results["fp32"].image.dim)


@pytest.mark.slow
def test_memory_reembeds_on_encoder_change_and_searches_by_text(
    root: Path,
    clip: tuple[Path, dict[str, hf_encoder.Exported]],
    dinov2: tuple[Path, dict[str, hf_encoder.Exported]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rap_edge.cli import main as cli

    images = []
    for i in range(3):
        path = root / f"ref{i}.png"
        cv2.imwrite(str(path), photo_like(10 + i))
        images.append(path)
    mem = root / "memory"
    with Memory.init(mem) as memory:
        memory.add("mug", images=[str(images[0]), str(images[1])], category="mug")
        memory.add("dog", images=[str(images[2])], category="dog")
    dino = dinov2[1]["fp32"].image
    clip_image, clip_text = clip[1]["fp32"].image, clip[1]["fp32"].text
    assert clip_text is not None
    at = ["--memory", str(mem)]
    assert (
        cli(
            [
                "memory",
                "rebuild-index",
                *at,
                "--manifest",
                str(dino.onnx.with_suffix(".json")),
                "--provider",
                "cpu",
            ]
        )
        == 0
    )
    assert "embedded 3 pending image(s)" in capsys.readouterr().out
    # A new encoder: every reference image is embedded again, and becomes the default.
    assert (
        cli(
            [
                "memory",
                "rebuild-index",
                *at,
                "--manifest",
                str(clip_image.onnx.with_suffix(".json")),
                "--provider",
                "cpu",
            ]
        )
        == 0
    )
    assert "embedded 3 pending image(s)" in capsys.readouterr().out
    with Memory(mem, readonly=True) as memory:
        assert memory.active_encoder == clip_image.encoder_id
        assert memory.encoders() == {dino.encoder_id: 32, clip_image.encoder_id: 24}
        assert memory.pending(clip_image.encoder_id) == []
        query = Encoder(clip_image.onnx.with_suffix(".json"), provider="cpu").embed(
            [cv2.imread(str(images[2]))]
        )
        (hits,) = memory.search(query, k=1)
        assert hits[0].name == "dog"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert (
        cli(
            [
                "memory",
                "search",
                *at,
                "--text",
                "a red mug",
                "--text",
                "a dog",
                "--text-encoder",
                str(clip_text.onnx.with_suffix(".json")),
                "--provider",
                "cpu",
                "-k",
                "2",
                "--json",
            ]
        )
        == 0
    )
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2
    assert {h["name"] for h in hits[0]} == {"mug", "dog"}
    want = TextEncoder(clip_text.onnx.with_suffix(".json"), provider="cpu").embed(["a dog"])
    with Memory(mem, readonly=True) as memory:
        (expected,) = memory.search(want, k=2, encoder=clip_image.encoder_id)
    assert [h["score"] for h in hits[1]] == pytest.approx([h.score for h in expected])
    assert cli(["memory", "search", *at, "--text", "a dog"]) == 1
    assert "--text needs --text-encoder" in capsys.readouterr().err


def test_clear_errors_for_bad_folders(root: Path, clip: tuple[Path, object]) -> None:
    with pytest.raises(InvalidInputError, match="no such folder"):
        hf_encoder.inspect_folder(root / "missing")
    empty = root / "empty"
    empty.mkdir()
    with pytest.raises(ModelStoreError, match=r"config\.json: missing"):
        hf_encoder.inspect_folder(empty)
    (empty / "config.json").write_text("{not json")
    with pytest.raises(ModelStoreError, match="not a readable JSON"):
        hf_encoder.inspect_folder(empty)
    (empty / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InvalidInputError, match="model_type 'bert' is not supported"):
        hf_encoder.inspect_folder(empty)
    (empty / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ModelStoreError, match=r"preprocessor_config\.json: missing"):
        hf_encoder.inspect_folder(empty)
    with pytest.raises(InvalidInputError, match="--kind dinov2"):
        hf_encoder.inspect_folder(clip[0], kind="dinov2")
    no_tokenizer = root / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        (no_tokenizer / name).write_bytes((clip[0] / name).read_bytes())
    with pytest.raises(ModelStoreError, match="no tokenizer for the text tower"):
        hf_encoder.export(no_tokenizer, root / "out-none", say=lambda _: None)
    assert not (root / "out-none").exists() or not list((root / "out-none").iterdir())


def test_unsupported_preprocessing_is_refused(root: Path) -> None:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    where = root / "preprocessor_config.json"
    no_crop = CLIPImageProcessorPil(size={"shortest_edge": 32}, do_center_crop=False)
    with pytest.raises(InvalidInputError, match="without a centre crop"):
        hf_encoder.preprocess_from_processor(no_crop, where)
    nearest = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, resample=0
    )
    with pytest.raises(InvalidInputError, match="resample 0"):
        hf_encoder.preprocess_from_processor(nearest, where)


def test_manifest_checks_the_new_preprocess_fields(
    dinov2: tuple[Path, dict[str, hf_encoder.Exported]], tmp_path: Path
) -> None:
    manifest: ModelManifest = dinov2[1]["fp32"].image
    data = json.loads(manifest.onnx.with_suffix(".json").read_text())
    for change, match in [
        ({"resize": "pad"}, "resize 'pad'"),
        ({"interpolation": "lanczos"}, "interpolation 'lanczos'"),
        ({"resize_shortest": 16}, "resize_shortest 16"),
        ({"antialias": "yes"}, "antialias"),
    ]:
        bad = json.loads(json.dumps(data))
        bad["preprocess"].update(change)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ModelStoreError, match=match):
            load_manifest(path)
    old = json.loads(json.dumps(data))
    for key in ("resize", "resize_shortest", "interpolation", "antialias"):
        del old["preprocess"][key]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    pre = load_manifest(path).preprocess
    assert (pre.resize, pre.interpolation, pre.antialias) == ("stretch", "bilinear", False)


@pytest.mark.slow
def test_check_reruns_parity_from_the_folder(
    siglip: tuple[Path, dict[str, hf_encoder.Exported]],
) -> None:
    """What `rap-edge models verify` runs; and no stray *.json beside the manifests."""
    results = siglip[1]
    for manifest in (
        results["fp32"].image,
        results["fp16"].image,
        results["fp32"].text,
        results["int8"].text,
    ):
        assert manifest is not None
        got = hf_encoder.check(load_manifest(manifest.onnx.with_suffix(".json")))
        assert got["ok"], (manifest.name, got)
    folder = results["fp32"].image.onnx.parent
    for path in folder.glob("*.json"):
        load_manifest(path)
    moved = load_manifest(results["fp32"].image.onnx.with_suffix(".json"))
    moved.provenance["weights_and_preprocessing_sha256"] = "0" * 64
    assert "changed since the export" in hf_encoder.check(moved)["error"]
