"""The face path's models: SSD detector, dlib 5-point landmarks, aligned chip, face embedder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# embed_faces_in_memory moved to rap_edge.embed; still importable from here.
from rap_edge.embed import embed_faces_in_memory
from rap_edge.errors import ModelStoreError
from rap_edge.pipeline._tracker import inside_share

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from rap_edge.detect import Detection, ShapePredictor, SsdFaceDetector
    from rap_edge.models import Encoder
    from rap_edge.runtime import Provider

__all__ = ["FACE_CATEGORIES", "FaceEmbedder", "FaceModels", "embed_faces_in_memory"]

# Memory categories whose concepts are recognised by face (others go to the object path).
FACE_CATEGORIES = frozenset({"person", "face", "people", "human"})
DETECTOR = "res10_ssd.json"
LANDMARKS = "dlib_shape_5.json"
EMBEDDER = "dlib_resnet.json"
CHIP_SIZE = 150
CHIP_PADDING = 0.25
# Least share of a detected box's area that must lie inside the frame (see FaceModels.detect).
MIN_INSIDE = 0.6
TILE_OVERLAP = 0.25  # share of a tile that overlaps its neighbour
EDGE_PX = 2  # a tile box this close to an inner tile edge is a cut face
TILE_MAX_FACE = 0.6  # tile boxes wider than this share of the tile: left to the whole frame
COVERED = 0.25  # a tile box this much inside a whole-frame box is part of that face
# Second passes, run only when the first finds no face (see FaceModels.detect):
FALLBACK_PAD = 0.3  # close-ups: grey border on every side, as a share of the longer side
FALLBACK_ANGLES = (45.0, -45.0)  # tilted faces: the frame rotated by these (degrees)
FALLBACK_GREY = 128
# Tiles of the second passes (and of `tiled` passes) are cut from the full-resolution frame,
# about TILE_SIDE px a side, the SSD's own input side (so a tile is not shrunk): 3x3 for
# 640x480, 4x4 (MAX_AUTO_TILES) from 901 px. Chosen on the calibration fold's far faces: 2x2
# tiles (480 px) found 76 of 86 named, 3x3 82, no other condition changed.
TILE_SIDE = 300
MAX_AUTO_TILES = 4
MIN_TILE_PX = 16  # frames whose tiles would be smaller are not tiled
# Last of the second passes, when the tiles found nothing either: a grid one tile finer (4x4
# on 640x480: tiles of ~200 px, each enlarged 1.5x by the SSD), for faces of 15-25 px the
# ~300 px tiles still miss. As the auto grid stops at 4x4, an 8K frame costs at most 5x5.
# Evidence for a box that is not a plain upright in-frame detection: the SSD must find a face
# again, at this score, centred within VERIFY_CENTRE px of the aligned chip's centre, on the
# chip set in the middle of a VERIFY_CANVAS grey square.
VERIFY_SCORE = 0.5
VERIFY_CANVAS = 300
VERIFY_CENTRE = 40.0


@dataclass
class FaceModels:
    """The three face models, loaded from a folder of exported manifests (``make models``).

    Attributes:
        detector: Face boxes.
        landmarks: 5 points per box (mapped from the detector's box convention).
        encoder: 128-d identity descriptor of the aligned chip.
        flip: Describe each chip as the mean of its descriptor and its mirror image's (a
            standard test-time augmentation; measured on the labelled set: clean recall 0.944
            -> 0.972 at the manifest threshold). The vectors differ from plain ones, so the
            encoder id gets a ``+flip`` suffix and they live in their own index.
        fallback_runs: Frames on which :meth:`detect` ran its second passes.
        dense_runs: Frames on which it ran the last of them, the finer tiles.
        verified: Candidate boxes :meth:`verify` confirmed.
        rejected: Candidate boxes :meth:`verify` rejected.
    """

    detector: SsdFaceDetector
    landmarks: ShapePredictor
    encoder: Encoder
    flip: bool = True
    fallback_runs: int = 0
    dense_runs: int = 0
    verified: int = 0
    rejected: int = 0

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        encoder: str = EMBEDDER,
        provider: Provider | str = "auto",
        flip: bool = True,
    ) -> FaceModels:
        """Load ``res10_ssd.json``, ``dlib_shape_5.json`` and ``encoder`` from ``model_dir``.

        Args:
            model_dir: Folder of exported manifests (default store: ``<store>/onnx``).
            encoder: Manifest file name (or path) of the face embedder, e.g. the INT8
                ``dlib_resnet.int8-qdq.json``; its vectors get their own index.
            provider: Execution provider for the ONNX models.
            flip: Mirror-average the descriptors (see the class attributes).

        Raises:
            ModelStoreError: naming the file when a model is missing, damaged or mismatched.
        """
        from rap_edge.detect import ShapePredictor, SsdFaceDetector
        from rap_edge.models import Encoder

        folder = Path(model_dir).expanduser()
        if not folder.is_dir():
            msg = f"{folder}: model folder not found (run `make models`, or pass --models DIR)"
            raise ModelStoreError(msg)
        enc_path = Path(encoder) if Path(encoder).is_absolute() else folder / encoder
        models = cls(
            detector=SsdFaceDetector(folder / DETECTOR, provider=provider),
            landmarks=ShapePredictor(folder / LANDMARKS),
            encoder=Encoder(enc_path, provider=provider),
            flip=flip,
        )
        models.landmarks.box_map(models.detector.manifest.name)  # fail now if not fitted
        return models

    def detect(  # noqa: PLR0913
        self,
        image: npt.NDArray[np.uint8],
        *,
        max_side: int = 1280,
        min_inside: float = MIN_INSIDE,
        min_px: int = 8,
        tiles: int = 1,
        nms_iou: float = 0.4,
        fallback: bool = False,
        tiled: bool = False,
        finer: bool = True,
    ) -> list[Detection]:
        """Faces in a BGR frame, in full-resolution pixels.

        The first pass is :meth:`detect_upright`. Its boxes with less than ``min_inside`` of
        their area inside the frame are kept only with evidence (:meth:`verify`): the SSD
        proposes such boxes on real photos (20 of 26 extra boxes on the labelled set's 173
        clean photos lay largely outside), but a face that fills the frame, forehead and chin
        cut off, looks the same. Such a verified box keeps its extent beyond the frame.

        With ``fallback``, when the first pass finds no face inside the frame (boxes mostly
        outside it do not count: see below), second passes run (counted in
        :attr:`fallback_runs`): one detector call on the frame with a grey border on every
        side (close-ups the SSD misses because the face overflows the frame) and on the frame
        rotated by +-45 degrees (tilted faces; their detections carry the ``angle``), each box
        kept only with evidence; if none is, tiles (far faces) when ``tiles`` is 1: about
        300 px each (3x3 on 640x480, at most 4x4; :func:`auto_tiles`), cut from the
        full-resolution frame (a frame over ``max_side`` is otherwise detected downscaled, which
        shrinks its far faces further); if those find nothing either and ``finer``, a grid one
        tile finer (at most :data:`MAX_AUTO_TILES` + 1 a side; counted in :attr:`dense_runs`).
        The pipeline sets ``finer`` only for photos: on a stream a face-less frame is mostly an
        empty scene, where the pass would double what each second-pass run costs.

        ``tiled`` (with ``tiles`` 1): the first pass itself is tiled that way, for when faces
        too small for the whole-frame pass are expected even though others are in view (an
        independent large photo, a small face's track just lost).
        """
        auto = auto_tiles(image.shape[0], image.shape[1])
        full = max(max_side, *image.shape[:2])
        kept, overflow = self.detect_upright(
            image,
            max_side=full if tiled and tiles == 1 else max_side,
            min_inside=min_inside,
            min_px=min_px,
            tiles=auto if tiled and tiles == 1 else tiles,
            nms_iou=nms_iou,
        )
        if kept or not fallback:
            return kept + self.verify(image, overflow)
        # No face inside the frame. A face that overflows it (a close-up) gets a first-pass box
        # that is often shifted by a third to two thirds of a face (measured on the labelled
        # set's close-ups; its chip is still face-like, so it verifies), and landmarks from it
        # give a chip the embedder cannot name. The padded view shows the whole face and boxes
        # it well, so its boxes are verified first and an overflow box is kept only where no
        # second-pass box lies (calibration fold: 48 -> 84 of 86 close-ups named).
        self.fallback_runs += 1
        found = self.verify(
            image,
            self._second_pass(image, max_side=max_side, min_px=min_px) + overflow,
            ordered=True,
        )
        if not found and tiles == 1 and not tiled:
            found, overflow = self.detect_upright(
                image, max_side=full, min_inside=min_inside, min_px=min_px, tiles=auto
            )
            found += self.verify(image, overflow)
            if not found and finer and min(image.shape[:2]) >= (auto + 1) * MIN_TILE_PX:
                self.dense_runs += 1
                found, overflow = self.detect_upright(
                    image, max_side=full, min_inside=min_inside, min_px=min_px, tiles=auto + 1
                )
                found += self.verify(image, overflow)
        return found

    def detect_upright(  # noqa: PLR0913
        self,
        image: npt.NDArray[np.uint8],
        *,
        max_side: int = 1280,
        min_inside: float = MIN_INSIDE,
        min_px: int = 8,
        tiles: int = 1,
        nms_iou: float = 0.4,
    ) -> tuple[list[Detection], list[Detection]]:
        """One upright detector pass: (boxes clipped to the frame, boxes mostly outside it).

        A frame larger than ``max_side`` is detected on a downscaled copy. Boxes with less than
        ``min_inside`` of their area inside the frame come second, unclipped (see
        :meth:`detect`). Boxes narrower than ``min_px`` after clipping are dropped.

        ``tiles`` > 1 also runs the detector on a ``tiles`` x ``tiles`` grid of overlapping
        tiles (one batched call), for small faces: the SSD sees its input at 300x300, so a
        20-40 px face in a 640x480 frame shrinks below its smallest prior. Tile boxes that touch
        an inner tile edge (cut faces) are dropped; the rest merge with the whole-frame boxes by
        NMS at ``nms_iou``.
        """
        from rap_edge.detect import Detection, nms

        h, w = image.shape[:2]
        small, scale = _downscale(image, max_side)
        views: list[
            tuple[npt.NDArray[np.uint8], int, int, tuple[bool, bool, bool, bool] | None]
        ] = [(small, 0, 0, None)]
        sh, sw = small.shape[:2]
        tw, th = (
            int(sw / (tiles - (tiles - 1) * TILE_OVERLAP)),
            int(sh / (tiles - (tiles - 1) * TILE_OVERLAP)),
        )
        if tiles > 1 and min(tw, th) >= MIN_TILE_PX:  # no tiles of a tiny frame
            for r in range(tiles):
                for c in range(tiles):
                    x0 = round(c * (sw - tw) / (tiles - 1))
                    y0 = round(r * (sh - th) / (tiles - 1))
                    views.append(
                        (
                            np.ascontiguousarray(small[y0 : y0 + th, x0 : x0 + tw]),
                            x0,
                            y0,
                            (x0 > 0, y0 > 0, x0 + tw < sw, y0 + th < sh),
                        )
                    )
        found = self.detector.detect_batch([v[0] for v in views])
        boxes: list[list[float]] = []
        scores: list[float] = []
        whole = len(found[0])  # the whole-frame boxes come first
        for (view, x0, y0, inner), dets in zip(views, found, strict=True):
            vh, vw = view.shape[:2]
            for d in dets:
                if inner is not None and (
                    (inner[0] and d.x1 <= EDGE_PX)
                    or (inner[1] and d.y1 <= EDGE_PX)
                    or (inner[2] and d.x2 >= vw - 1 - EDGE_PX)
                    or (inner[3] and d.y2 >= vh - 1 - EDGE_PX)
                    or d.x2 - d.x1 > TILE_MAX_FACE * vw
                ):
                    continue
                box = np.array([d.x1 + x0, d.y1 + y0, d.x2 + x0, d.y2 + y0])
                if inner is not None and _covered(box, boxes[:whole], scale):
                    continue  # a part of a face the whole-frame pass found (eye, chin)
                boxes.append(
                    [
                        (d.x1 + x0) / scale,
                        (d.y1 + y0) / scale,
                        (d.x2 + x0) / scale,
                        (d.y2 + y0) / scale,
                    ]
                )
                scores.append(d.score)
        if not boxes:
            return [], []
        arr = np.asarray(boxes, dtype=np.float32)
        keep = (
            nms(arr, np.asarray(scores, dtype=np.float32), nms_iou)
            if tiles > 1
            else range(len(arr))
        )
        out, outside = [], []
        for i in keep:
            x1, y1, x2, y2 = (float(v) for v in arr[i])
            area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
            cx1, cy1 = min(max(x1, 0.0), w - 1.0), min(max(y1, 0.0), h - 1.0)
            cx2, cy2 = min(max(x2, 0.0), w - 1.0), min(max(y2, 0.0), h - 1.0)
            inside = max(cx2 - cx1, 0.0) * max(cy2 - cy1, 0.0)
            if area <= 0 or cx2 - cx1 < max(1, min_px) or cy2 - cy1 < max(1, min_px):
                continue
            if inside / area < min_inside:
                outside.append(Detection(x1, y1, x2, y2, float(scores[i]), "face"))
            else:
                out.append(Detection(cx1, cy1, cx2, cy2, float(scores[i]), "face"))
        return out, outside

    def _second_pass(
        self, image: npt.NDArray[np.uint8], *, max_side: int, min_px: int
    ) -> list[Detection]:
        """Candidates from the padded and the rotated frame, in frame pixels (unverified)."""
        import cv2

        from rap_edge.detect import Detection

        small, scale = _downscale(image, max_side)
        sh, sw = small.shape[:2]
        pad = max(1, round(FALLBACK_PAD * max(sh, sw)))
        grey = (FALLBACK_GREY,) * 3
        views = [cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=grey)]
        rotations = []
        for angle in FALLBACK_ANGLES:
            m = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, 1.0)
            cos, sin = abs(m[0, 0]), abs(m[0, 1])
            nw, nh = int(sh * sin + sw * cos) + 1, int(sh * cos + sw * sin) + 1
            m[0, 2] += nw / 2 - sw / 2
            m[1, 2] += nh / 2 - sh / 2
            views.append(
                cv2.warpAffine(
                    small, m, (nw, nh), borderMode=cv2.BORDER_CONSTANT, borderValue=grey
                )
            )
            rotations.append((angle, cv2.invertAffineTransform(m)))
        found = self.detector.detect_batch([np.ascontiguousarray(v) for v in views])
        h, w = image.shape[:2]
        out = []
        for d in found[0]:
            x1, y1, x2, y2 = ((v - pad) / scale for v in (d.x1, d.y1, d.x2, d.y2))
            if min(x2, w) - max(x1, 0) >= min_px and min(y2, h) - max(y1, 0) >= min_px:
                out.append(Detection(x1, y1, x2, y2, d.score, "face"))
        for (angle, inv), dets in zip(rotations, found[1:], strict=True):
            for d in dets:
                cx, cy = (d.x1 + d.x2) / 2, (d.y1 + d.y2) / 2
                fx = (inv[0, 0] * cx + inv[0, 1] * cy + inv[0, 2]) / scale
                fy = (inv[1, 0] * cx + inv[1, 1] * cy + inv[1, 2]) / scale
                hw, hh = (d.x2 - d.x1) / scale / 2, (d.y2 - d.y1) / scale / 2
                if 0 <= fx < w and 0 <= fy < h and 2 * hw >= min_px:
                    out.append(
                        Detection(fx - hw, fy - hh, fx + hw, fy + hh, d.score, "face", angle)
                    )
        return out

    def verify(
        self,
        image: npt.NDArray[np.uint8],
        candidates: Sequence[Detection],
        *,
        ordered: bool = False,
    ) -> list[Detection]:
        """The candidates the SSD confirms on their own aligned chip (best score first).

        Each candidate's landmarks give the aligned 150x150 chip the embedder would see; it is
        set in the middle of a grey square and detected again: a face comes back centred, a
        phantom box (a shadow, a patch of wall or hair) gives nothing there. Candidates whose
        centre lies inside a better confirmed box are dropped (the same face from two passes);
        "better" is the higher score, or with ``ordered`` the earlier candidate.
        One batched detector call; counted in :attr:`verified` / :attr:`rejected`.
        """
        if not candidates:
            return []
        pts = self.landmarks_for_detections(image, candidates)
        side, chip = VERIFY_CANVAS, CHIP_SIZE
        lo = (side - chip) // 2
        canvases = []
        for p in pts:
            canvas = np.full((side, side, 3), FALLBACK_GREY, np.uint8)
            canvas[lo : lo + chip, lo : lo + chip] = self.chip(image, p)
            canvases.append(canvas)
        again = self.detector.detect_batch(canvases)
        ok = [
            d
            for d, dets in zip(candidates, again, strict=True)
            if any(
                e.score >= VERIFY_SCORE
                and abs((e.x1 + e.x2) / 2 - side / 2) <= VERIFY_CENTRE
                and abs((e.y1 + e.y2) / 2 - side / 2) <= VERIFY_CENTRE
                for e in dets
            )
        ]
        self.verified += len(ok)
        self.rejected += len(candidates) - len(ok)
        out: list[Detection] = []
        for d in ok if ordered else sorted(ok, key=lambda d: -d.score):
            cx, cy = (d.x1 + d.x2) / 2, (d.y1 + d.y2) / 2
            if not any(o.x1 <= cx <= o.x2 and o.y1 <= cy <= o.y2 for o in out):
                out.append(d)
        return out

    @property
    def encoder_id(self) -> str:
        """Id of the face vectors (``+flip`` when mirror-averaged)."""
        return self.encoder.encoder_id + ("+flip" if self.flip else "")

    def embed_chips(self, chips: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Descriptors of aligned chips (mirror-averaged when :attr:`flip`), one batch."""
        if not self.flip or not chips:
            return self.encoder.embed(chips)
        both = self.encoder.embed([*chips, *(np.ascontiguousarray(c[:, ::-1]) for c in chips)])
        n = len(chips)
        out: npt.NDArray[np.float32] = ((both[:n] + both[n:]) / 2).astype(np.float32)
        return out

    def landmarks_for(
        self, image: npt.NDArray[np.uint8], boxes: Sequence[npt.ArrayLike]
    ) -> npt.NDArray[np.float32]:
        """5 landmarks per detector box, [len(boxes), 5, 2]."""
        return self.landmarks.predict_many(image, boxes, detector=self.detector.manifest.name)

    def landmarks_for_detections(
        self, image: npt.NDArray[np.uint8], detections: Sequence[Detection]
    ) -> npt.NDArray[np.float32]:
        """5 landmarks per detection, [len(detections), 5, 2], in frame pixels.

        A rotated detection (``angle`` not 0) is looked at upright: a square around its box is
        warped by ``angle`` about the box centre, the landmarks found there and mapped back.
        """
        import cv2

        out = np.zeros((len(detections), 5, 2), np.float32)
        upright = [i for i, d in enumerate(detections) if d.angle == 0]
        if upright:
            out[upright] = self.landmarks_for(image, [detections[i].box for i in upright])
        for i, d in enumerate(detections):
            if d.angle == 0:
                continue
            cx, cy = (d.x1 + d.x2) / 2, (d.y1 + d.y2) / 2
            side = max(8, int(2 * max(d.x2 - d.x1, d.y2 - d.y1)))
            m = cv2.getRotationMatrix2D((cx, cy), d.angle, 1.0)
            m[0, 2] += side / 2 - cx
            m[1, 2] += side / 2 - cy
            view = np.asarray(
                cv2.warpAffine(image, m, (side, side), borderMode=cv2.BORDER_REPLICATE), np.uint8
            )
            hw, hh = (d.x2 - d.x1) / 2, (d.y2 - d.y1) / 2
            box = np.array([side / 2 - hw, side / 2 - hh, side / 2 + hw, side / 2 + hh])
            pts = self.landmarks_for(view, [box])[0]
            inv = cv2.invertAffineTransform(m)
            out[i] = pts @ inv[:, :2].T + inv[:, 2]
        return out

    @staticmethod
    def chip(image: npt.NDArray[np.uint8], landmarks: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """The aligned 150x150 chip the embedder expects."""
        from rap_edge.detect import align_face

        return align_face(image, landmarks, size=CHIP_SIZE, padding=CHIP_PADDING)


def auto_tiles(height: int, width: int) -> int:
    """Tiles a side for a frame: about :data:`TILE_SIDE` px each, 2 to :data:`MAX_AUTO_TILES`."""
    return min(MAX_AUTO_TILES, max(2, math.ceil(max(height, width) / TILE_SIDE)))


def _downscale(image: npt.NDArray[np.uint8], max_side: int) -> tuple[npt.NDArray[np.uint8], float]:
    """The frame shrunk so its longer side is at most ``max_side`` (area filter), and the scale."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image, scale
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8), scale


def _covered(
    box: npt.NDArray[np.float64], others: Sequence[Sequence[float]], scale: float
) -> bool:
    """Whether a quarter of ``box`` (detector pixels) lies inside one of ``others`` (frame px).

    A tile's view of a face the whole-frame pass found comes back as a part of it (an eye, a
    chin) or, on a tilted face, shifted by half a face; two real faces rarely share a quarter
    of the smaller one's box.
    """
    return any(inside_share(box, [v * scale for v in o]) >= COVERED for o in others)


def largest(detections: Sequence[Detection]) -> Detection | None:
    """The detection with the largest box (the subject of a reference photo)."""
    if not detections:
        return None
    return max(detections, key=lambda d: (d.x2 - d.x1) * (d.y2 - d.y1))


class FaceEmbedder:
    """Implements the memory's ``Embedder`` for face concepts: largest face -> aligned chip.

    A reference photo with no detected face is taken as a face crop (its whole frame is used as
    the face box); :attr:`fallbacks` counts those.
    """

    def __init__(self, models: FaceModels) -> None:
        self.models = models
        self.fallbacks = 0

    @property
    def encoder_id(self) -> str:
        return self.models.encoder_id

    @property
    def dim(self) -> int:
        return self.models.encoder.dim

    def chips(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[npt.NDArray[np.uint8]]:
        """The aligned chip of each image's largest face."""
        from rap_edge.detect import Detection

        out = []
        fallbacks = 0
        from rap_edge.pipeline._quality import denoise_if_grainy

        for raw in images:
            # A dark, grainy reference photo is denoised as the pipeline denoises such frames.
            img = denoise_if_grainy(raw)
            img = raw if img is None else img
            face = largest(self.models.detect(img, fallback=True))
            if face is None:
                fallbacks += 1
                face = Detection(0.0, 0.0, img.shape[1] - 1.0, img.shape[0] - 1.0, 0.0)
            pts = self.models.landmarks_for_detections(img, [face])[0]
            out.append(self.models.chip(img, pts))
        # Counted once the batch succeeds: a failed batch is retried image by image.
        self.fallbacks += fallbacks
        return out

    def embed(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        return self.models.embed_chips(self.chips(images))
