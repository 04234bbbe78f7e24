"""dlib's 5-point face landmark model (an ensemble of regression trees) run in numpy.

The SSD face detector gives boxes only; the face embedder needs the chip that dlib cuts from 5
landmarks. ``shape_predictor_5_face_landmarks.dat`` (dlib's cascade of regression trees, Kazemi
and Sullivan 2014) is converted by ``export/dlib_landmarks.py`` into a ``.npz`` of plain arrays;
this module evaluates it the way dlib's ``shape_predictor::operator()`` does:

1. start from the mean shape, in box-normalised coordinates (0..1 across the box);
2. at each of the cascade's stages, read a few hundred grey pixels at points anchored to the
   current shape (offsets warped by the similarity transform from the mean shape to the current
   one; points rounded to the nearest pixel; 0 outside the image), walk every tree of the stage
   by thresholded pixel differences and add the leaves' shape updates;
3. map the final shape from the box to image pixels.

The box must be of the kind the model was trained on (dlib's face detectors). Boxes from
another detector are first mapped with a fitted :class:`BoxMap`, stored in the manifest by the
exporter together with the measured effect on landmark and descriptor accuracy.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models import ModelManifest, load_manifest, sha256_file

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import numpy.typing as npt

__all__ = ["BoxMap", "ShapePredictor"]

_ARRAYS = (
    "initial_shape",
    "split_idx1",
    "split_idx2",
    "split_thresh",
    "leaf_values",
    "anchor_idx",
    "deltas",
)


@dataclass(frozen=True, slots=True)
class BoxMap:
    """Maps another detector's face box onto the box a landmark model was trained with.

    ``cx' = cx + dx * w``, ``cy' = cy + dy * h``, ``w' = sw * w``, ``h' = sh * h`` on
    (x1, y1, x2, y2) boxes. The identity map is ``BoxMap(0, 0, 1, 1)``.
    """

    dx: float = 0.0
    dy: float = 0.0
    sw: float = 1.0
    sh: float = 1.0

    def apply(self, box: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The mapped box, float64 [x1, y1, x2, y2]."""
        x1, y1, x2, y2 = np.asarray(box, dtype=np.float64).reshape(4)
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + self.dx * w, (y1 + y2) / 2 + self.dy * h
        w, h = w * self.sw, h * self.sh
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    @classmethod
    def from_extra(cls, value: Any) -> BoxMap:  # noqa: ANN401
        """Read ``[dx, dy, sw, sh]`` from a manifest."""
        try:
            dx, dy, sw, sh = (float(v) for v in value)
        except (TypeError, ValueError) as err:
            msg = f"a box map must be [dx, dy, sw, sh], got {value!r}"
            raise ModelStoreError(msg) from err
        if not (sw > 0 and sh > 0 and np.isfinite([dx, dy, sw, sh]).all()):
            msg = f"a box map needs finite offsets and positive scales, got {value!r}"
            raise ModelStoreError(msg)
        return cls(dx, dy, sw, sh)

    def to_list(self) -> list[float]:
        """``[dx, dy, sw, sh]`` for a manifest."""
        return [self.dx, self.dy, self.sw, self.sh]


def _similarity_2x2(
    src: npt.NDArray[np.float64], dst: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Linear part (c * R) of the least-squares similarity src -> dst.

    dlib solves it with Umeyama's SVD; in 2-D without reflection that is the closed form
    ``[[a, -b], [b, a]]`` below (the landmark shapes never mirror), at a fraction of the cost.
    """
    s = src - src.mean(axis=0)
    d = dst - dst.mean(axis=0)
    norm = float((s * s).sum())
    if norm == 0:
        return np.eye(2)
    a = float((s * d).sum()) / norm
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm
    return np.array([[a, -b], [b, a]])


class ShapePredictor:
    """A converted dlib shape predictor (task ``landmarks``).

    The manifest's ``onnx``/``onnx_sha256`` fields name the ``.npz`` of tree arrays (the trees
    are not an ONNX graph; the field names are shared with the other models).
    """

    def __init__(self, manifest: ModelManifest | str | Path, *, check_hash: bool = True) -> None:
        """Load the arrays a manifest names.

        Raises:
            ModelStoreError: if the file is missing, damaged, does not match the manifest's hash
                or lacks an array.
        """
        m = manifest if isinstance(manifest, ModelManifest) else load_manifest(manifest)
        self.manifest = m
        if m.task != "landmarks":
            msg = f"{m.path}: task {m.task!r} is not a landmark model"
            raise ModelStoreError(msg)
        path = m.onnx
        if not path.is_file():
            msg = f"{path}: landmark model file is missing (run `make models`)"
            raise ModelStoreError(msg)
        if check_hash and sha256_file(path) != m.onnx_sha256:
            msg = f"{path}: SHA-256 differs from manifest {m.path} (damaged or replaced)"
            raise ModelStoreError(msg)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in _ARRAYS}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            msg = f"{path}: not a landmark model archive ({err})"
            raise ModelStoreError(msg) from err
        self._init = arrays["initial_shape"].astype(np.float32).reshape(-1, 2)
        self._i1 = arrays["split_idx1"].astype(np.intp)
        self._i2 = arrays["split_idx2"].astype(np.intp)
        self._th = arrays["split_thresh"].astype(np.float32)
        self._leaves = arrays["leaf_values"].astype(np.float32)
        self._anchor = arrays["anchor_idx"].astype(np.intp)
        self._deltas = arrays["deltas"].astype(np.float32)
        stages, trees, splits = self._th.shape
        points = len(self._init)
        depth = int(np.log2(splits + 1))
        if (
            2**depth - 1 != splits
            or self._i1.shape != self._th.shape
            or self._i2.shape != self._th.shape
            or self._leaves.shape != (stages, trees, splits + 1, 2 * points)
            or self._anchor.shape[0] != stages
            or self._deltas.shape[:2] != self._anchor.shape
            or self._anchor.max() >= points
        ):
            msg = f"{path}: landmark arrays have inconsistent shapes"
            raise ModelStoreError(msg)
        self._depth = depth
        self._init64 = self._init.astype(np.float64)
        # Per stage, flat views: tree t's node n is at t * splits + n, its leaf l at
        # t * (splits + 1) + l.
        self._i1 = self._i1.reshape(stages, -1)
        self._i2 = self._i2.reshape(stages, -1)
        self._thf = self._th.reshape(stages, -1)
        self._leaves = self._leaves.reshape(stages, trees * (splits + 1), -1)
        self.num_points = points
        extra = m.extra
        self.box_maps: dict[str, BoxMap] = {
            str(k): BoxMap.from_extra(v) for k, v in dict(extra.get("box_maps", {})).items()
        }

    def box_map(self, detector: str | None) -> BoxMap:
        """The fitted map for boxes of ``detector`` (identity for dlib's own boxes / ``None``).

        Raises:
            ModelStoreError: if no map was fitted for that detector.
        """
        if detector is None:
            return BoxMap()
        try:
            return self.box_maps[detector]
        except KeyError:
            msg = (
                f"{self.manifest.path}: no box map for detector {detector!r} "
                f"(have: {sorted(self.box_maps)})"
            )
            raise ModelStoreError(msg) from None

    def predict(
        self, image: npt.NDArray[np.uint8], box: npt.ArrayLike, *, detector: str | None = None
    ) -> npt.NDArray[np.float32]:
        """Landmarks [points, 2] (x, y in pixels) of the face in ``box``.

        Args:
            image: HxW grey or HxWx3 uint8 image.
            box: [x1, y1, x2, y2]; for ``detector=None`` in dlib's convention (inclusive
                corners, as ``dlib.rectangle``), else a box of that detector, mapped first.
            detector: Name of the detector the box comes from (a key of ``box_maps``).

        Raises:
            InvalidInputError: on a bad image or a box that is not 4 finite numbers with
                x2 > x1 and y2 > y1.
        """
        out: npt.NDArray[np.float32] = self.predict_many(image, [box], detector=detector)[0]
        return out

    def predict_many(
        self,
        image: npt.NDArray[np.uint8],
        boxes: Sequence[npt.ArrayLike],
        *,
        detector: str | None = None,
    ) -> npt.NDArray[np.float32]:
        """Landmarks [len(boxes), points, 2] for several faces of one image."""
        if (
            image.dtype != np.uint8
            or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3))  # noqa: PLR2004
            or 0 in image.shape
        ):
            msg = f"image must be HxW or HxWx3 uint8, got {image.dtype} {image.shape}"
            raise InvalidInputError(msg)
        out = np.zeros((len(boxes), self.num_points, 2), dtype=np.float32)
        bmap = self.box_map(detector)
        for i, raw in enumerate(boxes):
            box = np.asarray(raw, dtype=np.float64).reshape(-1)
            if (
                box.shape != (4,)
                or not np.isfinite(box).all()
                or not (box[2] > box[0] and box[3] > box[1])
            ):
                msg = f"box must be 4 finite numbers x1 < x2, y1 < y2, got {raw!r}"
                raise InvalidInputError(msg)
            out[i] = self._run(image, bmap.apply(box) if detector is not None else box)
        return out

    def _run(
        self, image: npt.NDArray[np.uint8], box: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float32]:
        h, w = image.shape[:2]
        x1, y1, x2, y2 = box
        origin = np.array([x1, y1])
        extent = np.array([x2 - x1, y2 - y1])
        shape = self._init.copy()
        stages, trees, splits = self._th.shape
        base = np.arange(trees) * splits  # flat index of each tree's root
        leaf_base = np.arange(trees) * (splits + 1)
        for stage in range(stages):
            tform = _similarity_2x2(self._init64, shape.astype(np.float64)).astype(np.float32)
            pts = self._deltas[stage] @ tform.T + shape[self._anchor[stage]]
            xy = np.floor(origin + pts.astype(np.float64) * extent + 0.5).astype(np.intp)
            inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            values = np.zeros(len(xy), dtype=np.float32)
            values[inside] = _intensity(image[xy[inside, 1], xy[inside, 0]])
            node = np.zeros(trees, dtype=np.intp)
            i1, i2, th = self._i1[stage], self._i2[stage], self._thf[stage]
            for _ in range(self._depth):
                at = base + node
                go_left = values[i1[at]] - values[i2[at]] > th[at]
                node = 2 * node + 2 - go_left
            leaves = self._leaves[stage][leaf_base + node - splits]
            # dlib adds the trees' updates one at a time in float32; cumsum does the same
            # sequential sum (a pairwise sum rounds differently, and the cascade amplifies it).
            stacked = np.concatenate([shape.reshape(1, -1), leaves], axis=0)
            shape = np.cumsum(stacked, axis=0, dtype=np.float32)[-1].reshape(-1, 2)
        points: npt.NDArray[np.float32] = (origin + shape.astype(np.float64) * extent).astype(
            np.float32
        )
        return points


def _intensity(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Dlib's intensity of sampled pixels: grey as is, colour as (r + g + b) // 3."""
    out: npt.NDArray[np.float32] = (
        pixels.astype(np.float32)
        if pixels.ndim == 1
        else (pixels.astype(np.int32).sum(axis=1) // 3).astype(np.float32)
    )
    return out
