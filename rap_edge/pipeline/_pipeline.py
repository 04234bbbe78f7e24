"""Frame in, named recognitions out: detect, track, embed when needed, search, decide, vote.

Per frame, for faces:

1. detect on a copy downscaled to ``detect_max_side`` (large frames), boxes scaled back;
2. match boxes to tracks (IoU);
3. for tracks whose embedding is missing, older than ``embed_every`` frames or whose box moved
   (IoU with the embedded box below ``reembed_iou``): landmarks and the aligned chip at full
   resolution, then one batched embedder call;
4. one batched memory search for all faces (reused embeddings are searched again, which is
   cheap and makes live memory edits visible at once);
5. per observation a decision (threshold, margin), per track a vote over recent decisions;
6. unknown faces feed the unknown clusters.

Tracks (with their reused embeddings and votes) are dropped before a frame that is an
independent photo (``process(..., independent=True)``: a single image or a folder of photos)
and at a scene cut: the resolution changes, or the frame's 32x24 grey thumbnail correlates
with the previous one below ``scene_cut`` (see :func:`scene_signature`).

The pipeline never raises on a frame's content: a frame that is not an image raises
:class:`~rap_edge.errors.InvalidInputError` (the caller skips and counts it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import InvalidInputError
from rap_edge.pipeline._faces import FACE_CATEGORIES, FaceModels
from rap_edge.pipeline._quality import denoise_if_grainy, face_quality
from rap_edge.pipeline._scoring import DEFAULT_MARGIN, Thresholds, decide
from rap_edge.pipeline._tracker import Observation, Track, Tracker, inside_share
from rap_edge.pipeline._types import Candidate, FrameResult, Recognition
from rap_edge.sources._normalize import check_bgr_image

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from rap_edge.detect import Detection
    from rap_edge.memory import Memory
    from rap_edge.pipeline._objects import ObjectModels
    from rap_edge.pipeline._types import Decision
    from rap_edge.pipeline._unknown import UnknownClusters

    # One object pass's box: the detection, its decision, the best candidate, all candidates.
    ObjectFind = tuple[Detection, Decision, Candidate | None, list[Candidate]]

__all__ = ["SCENE_CUT", "Pipeline", "PipelineConfig", "scene_signature"]

#: Correlation of consecutive frames' 32x24 grey thumbnails below which the scene changed.
#: Measured (``bench/scene_cut.py``): consecutive frames of video-like streams (moving faces,
#: pan, zoom, lighting swings, sensor noise, a person walking through) 0.938 or more; pairs of
#: unrelated photos at one resolution (the labelled set and its conditions, 599 pairs) median
#: 0.03, 597 of 599 below 0.85 (the other two: copies of one photo).
SCENE_CUT = 0.85
# A face track narrower than this (px) that goes missing makes the next frames tiled: the
# whole-frame pass finds faces down to about 25 px in 640x480, tiles down to about 16.
SMALL_TRACK_PX = 40
# Independent photos with a longer side over this get a tiled first pass: the whole-frame pass
# (the SSD sees 300x300) misses faces under about 4 % of the longer side, 38 px at 960.
AUTO_TILE_MIN_SIDE = 960
# On a stream where the second passes keep finding nothing, their gap doubles up to this many
# times fallback_every (30 frames, 2 s at 15 Hz, by default).
FALLBACK_BACKOFF = 10
_THUMB = (32, 24)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Pipeline settings (defaults suit a 640x480 camera at 10-30 FPS).

    Attributes:
        k: Concepts retrieved per observation (after the category filter).
        margin: Best-vs-second margin under which a decision is ``uncertain``.
        track: Follow faces across frames (off: every frame stands alone, as for photos).
        embed_every: Re-embed a tracked face at least every N frames (1: every frame).
        reembed_iou: Re-embed earlier when the box's IoU with the embedded box falls below.
        track_iou: Least IoU for a detection to continue a track.
        max_missed: Frames a track survives without a detection.
        vote_window: Recent observations in a track's identity vote.
        detect_max_side: Frames larger than this (longest side) are downscaled for detection.
        min_face_px: Faces narrower than this (pixels) are dropped as too small to identify.
        tiles: Also detect on a tiles x tiles grid (2 or 3) to find small, far faces; costs
            one batched detector call of tiles^2 extra images per frame (see bench/).
        object_every: With an object path, look for objects every N frames (1: every frame);
            in between, the last object recognitions are repeated (``embedded`` false).
        scene_cut: Drop the tracks when consecutive frames' thumbnails correlate below this
            (0: only on a change of resolution); see :data:`SCENE_CUT`.
        fallback_every: When the first detector pass finds no face, run the second passes
            (padded frame for close-ups, +-45 degree rotations, then tiles; see
            ``FaceModels.detect``) on every independent photo and on every Nth frame of a
            stream while faces are in view (0: never); on a stream with no face the gap
            doubles after each fruitless run, up to :data:`FALLBACK_BACKOFF` x N frames, and
            drops back to N when a face or a scene cut comes. They cost several detector calls
            (about 190 ms on 2 cores at 640x480; ``bench/detect_passes.py``).
        auto_tiles: With ``tiles`` 1, tile the first pass itself (full resolution, about
            300 px tiles; see ``FaceModels.detect``'s ``tiled``) on an independent photo larger
            than :data:`AUTO_TILE_MIN_SIDE`, and on the frames of a stream where the second
            passes may run (every ``fallback_every``-th) while a face track narrower than
            :data:`SMALL_TRACK_PX` is missing (a far face the whole-frame pass lost).
        denoise: Denoise a frame whose noise is a large share of its contrast (a dark, grainy
            camera image; :func:`~rap_edge.pipeline._quality.noise_ratio` at least
            :data:`~rap_edge.pipeline._quality.NOISY`) before detection and embedding, with
            non-local means (about 80 ms at 640x480, only on such frames; frames over
            :data:`~rap_edge.pipeline._quality.DENOISE_MAX_SIDE` are left as they are). Other
            frames are untouched.
    """

    k: int = 3
    margin: float = DEFAULT_MARGIN
    track: bool = True
    embed_every: int = 10
    reembed_iou: float = 0.6
    track_iou: float = 0.3
    max_missed: int = 10
    vote_window: int = 7
    detect_max_side: int = 1280
    min_face_px: int = 8
    tiles: int = 1
    object_every: int = 5
    scene_cut: float = SCENE_CUT
    fallback_every: int = 3
    auto_tiles: bool = True
    denoise: bool = True

    def check(self) -> None:
        """Refuse absurd values with a message naming the field.

        Raises:
            InvalidInputError: on a value out of range.
        """
        rules = {
            "k": (1, 100),
            "embed_every": (1, 10_000),
            "max_missed": (0, 10_000),
            "vote_window": (1, 1000),
            "detect_max_side": (64, 16_384),
            "min_face_px": (0, 10_000),
            "tiles": (1, 4),
            "object_every": (1, 10_000),
            "fallback_every": (0, 10_000),
        }
        for name, (lo, hi) in rules.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                msg = f"{name} must be an integer in {lo}..{hi}, got {value!r}"
                raise InvalidInputError(msg)
        for name in ("margin", "reembed_iou", "track_iou", "scene_cut"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0 <= value <= 1)
            ):
                msg = f"{name} must be a number in 0..1, got {value!r}"
                raise InvalidInputError(msg)


NESTED = 0.7  # share of the smaller box inside the larger: one object seen twice


def one_box_per_object(
    found: list[ObjectFind],
) -> list[ObjectFind]:
    """Drop a detector box of one class that lies mostly inside another of the same class.

    A detector's NMS keeps two boxes of one object when their IoU is low: the object and a
    wider box around it (IoU 0.47 for the cat of the demo), or a box on one part of it (the
    rear half of the demo's motorbike, 0.74 of it inside the whole), and the second would
    be shown as an ``unknown`` beside the named one. Of such a nested pair the
    box whose crop matches the memory better stays (named before unknown, then the higher
    similarity). Two objects of one class, one in front of the other and mostly inside its
    box, are then seen as one: the documented cost.
    """

    def rank(item: ObjectFind) -> tuple[bool, float]:
        _, decision, best, cands = item
        score = best.score if best else (cands[0].score if cands else -1.0)
        return (decision == "known", score)

    def nested(a: Detection, b: Detection) -> bool:  # the smaller one mostly inside the other
        ba, bb = (a.x1, a.y1, a.x2, a.y2), (b.x1, b.y1, b.x2, b.y2)
        return max(inside_share(ba, bb), inside_share(bb, ba)) >= NESTED

    kept: list[ObjectFind] = []
    for item in sorted(found, key=rank, reverse=True):
        d = item[0]
        if not any(o[0].label == d.label and nested(d, o[0]) for o in kept):
            kept.append(item)
    order = {id(item): i for i, item in enumerate(found)}
    return sorted(kept, key=lambda item: order[id(item)])


PET_FACE = 0.7  # share of a face box inside a named pet's box: the pet's own face


def _without_pet_faces(
    recognitions: list[Recognition], objects: Sequence[Recognition]
) -> list[Recognition]:
    """The recognitions less the faces that are a named pet's own face.

    The face detector takes a cat's or dog's face for a person's now and then (the skimage
    cat: an ``unknown`` face, which `ask` then called "someone I don't know"). A face that
    is not named as a person and lies mostly inside the box of an object named as a concept
    of an animal category (:func:`~rap_edge.pipeline._objects.is_animal_category`) is that
    animal's face, and is dropped. A named person's face is never dropped, nor any face
    beside an unnamed animal (nothing says which it is).
    """
    from rap_edge.pipeline._objects import is_animal_category

    pets = []
    for r in objects:
        named = next((c for c in r.candidates if c.concept_id == r.concept_id), None)
        if r.decision == "known" and named is not None and is_animal_category(named.category):
            pets.append(r.box)
    if not pets:
        return recognitions

    def inside(face: tuple[float, float, float, float]) -> bool:
        return any(inside_share(face, b) >= PET_FACE for b in pets)

    return [
        r
        for r in recognitions
        if not (r.kind == "face" and r.decision != "known" and inside(r.box))
    ]


class Pipeline:
    """The retrieval pipeline for one stream (it holds the stream's tracks)."""

    def __init__(  # noqa: PLR0913
        self,
        faces: FaceModels,
        memory: Memory | None = None,
        *,
        thresholds: Thresholds | None = None,
        config: PipelineConfig | None = None,
        unknown: UnknownClusters | None = None,
        objects: ObjectModels | None = None,
    ) -> None:
        """Set up a stream.

        Args:
            faces: The face models.
            memory: The concept memory (None: everything is unknown).
            thresholds: Calibrated thresholds; the face embedder's manifest threshold fills in.
            config: Settings.
            unknown: Where unknown faces are clustered (None: not clustered).
            objects: The object/pet path (None: faces only).
        """
        self.faces = faces
        self.memory = memory
        self.config = config or PipelineConfig()
        self.config.check()
        self.thresholds = thresholds or Thresholds(margin=self.config.margin)
        self.thresholds.set_default(faces.encoder_id, faces.encoder.manifest.threshold)
        self.unknown = unknown
        self.objects = objects
        if objects is not None:
            self.thresholds.set_default(objects.encoder_id, objects.encoder.manifest.threshold)
        self._last_objects: list[Recognition] = []
        self.tracker = Tracker(
            min_iou=self.config.track_iou,
            max_missed=self.config.max_missed,
            window=self.config.vote_window,
        )
        self._frame = -1
        self._scene: tuple[tuple[int, ...], npt.NDArray[np.float32] | None] | None = None
        self.scene_cuts = 0
        self._next_fallback = 0  # stream frame from which the second passes may run again
        self._fallback_gap = self.config.fallback_every
        self.small_track_tiles = 0  # frames tiled because a small face's track was missing
        self.denoised = 0  # frames denoised before detection (config.denoise)

    @property
    def face_threshold(self) -> float:
        """The face encoder's threshold in use."""
        return self.thresholds.get(self.faces.encoder_id)

    def reset(self) -> None:
        """Forget the tracks (start of an unrelated sequence)."""
        self.tracker.reset()
        self._scene = None
        self._last_objects = []
        self._next_fallback = 0
        self._fallback_gap = self.config.fallback_every

    def forget_decisions(self) -> None:
        """Decide afresh from the next frame on (after a memory edit or a threshold change).

        Tracks keep their ids and embeddings; their identity votes, cast against the memory
        or settings as they were, are dropped (otherwise older votes outvote a concept just
        added, and a removed concept's id lingers until the vote window turns over), and so
        are the object results repeated between object passes.
        """
        for track in self.tracker.tracks.values():
            track.votes.clear()
        self._last_objects = []

    def process(
        self,
        frame: npt.NDArray[np.uint8],
        *,
        index: int | None = None,
        timestamp: float | None = None,
        source: str = "",
        independent: bool = False,
    ) -> FrameResult:
        """Recognitions in one BGR frame.

        Args:
            frame: BGR uint8 [H, W, 3].
            index: Frame number (default: one more than the last).
            timestamp: Seconds (default: wall clock).
            source: Where the frame came from (kept with unknown-face crops).
            independent: The frame is an unrelated photo: no track, reused embedding, vote or
                object result of an earlier frame is used for it, nor is one of its own
                kept for the next frame.

        Raises:
            InvalidInputError: if ``frame`` is not a BGR uint8 image.
        """
        t_start = time.perf_counter()
        image = check_bgr_image(frame)
        denoise_ms = None
        if self.config.denoise:
            t = time.perf_counter()
            cleaned = denoise_if_grainy(image)
            if cleaned is not None:
                image, denoise_ms = cleaned, _ms(t)
                self.denoised += 1
        self._frame = self._frame + 1 if index is None else index
        alone = independent or not self.config.track
        result = FrameResult(
            index=self._frame,
            timestamp=time.time() if timestamp is None else timestamp,
            width=image.shape[1],
            height=image.shape[0],
        )
        result.scene_cut = self._scene_changed(image, check=not alone)
        if alone or result.scene_cut:
            self.tracker.reset()
            self._last_objects = []
        if result.scene_cut:  # a new scene: the second passes may run at once
            self._next_fallback = self._frame
            self._fallback_gap = self.config.fallback_every
        timings = result.timings_ms
        if denoise_ms is not None:
            timings["denoise"] = denoise_ms
        t = time.perf_counter()
        every = self.config.fallback_every
        fallback = every > 0 and (alone or self._frame >= self._next_fallback)
        detections = self._detect(
            image,
            fallback=fallback,
            tiled=fallback and self._tiled(image, alone=alone),
            finer=alone,
        )
        if not alone and every > 0:
            self._pace_fallback(found=bool(detections), ran=fallback)
        timings["detect"] = _ms(t)
        t = time.perf_counter()
        boxes = [(d.x1, d.y1, d.x2, d.y2) for d in detections]
        tracks = self.tracker.update(self._frame, "face", boxes)
        todo = [
            i
            for i, tr in enumerate(tracks)
            if tr.needs_embedding(
                self._frame,
                1 if alone else self.config.embed_every,
                self.config.reembed_iou,
            )
        ]
        timings["track"] = _ms(t)
        t = time.perf_counter()
        points = (
            self.faces.landmarks_for_detections(image, [detections[i] for i in todo])
            if todo
            else np.zeros((0, 5, 2), np.float32)
        )
        timings["landmarks"] = _ms(t)
        t = time.perf_counter()
        chips = [self.faces.chip(image, p) for p in points]
        timings["align"] = _ms(t)
        t = time.perf_counter()
        if chips:
            vectors = self.faces.embed_chips(chips)
            for j, i in enumerate(todo):
                tr = tracks[i]
                tr.embedding, tr.embedded_box, tr.embedded_frame = (
                    vectors[j],
                    boxes[i],
                    self._frame,
                )
                tr.extra["landmarks"] = points[j]
                tr.extra["quality"] = face_quality(chips[j], points[j])
        timings["embed"] = _ms(t)
        t = time.perf_counter()
        found = self._search([tr.embedding for tr in tracks])
        timings["search"] = _ms(t)
        fresh = set(todo)
        strangers: list[tuple[Recognition, Detection, Track]] = []
        for i, (det, tr) in enumerate(zip(detections, tracks, strict=True)):
            decision, best = decide(
                found[i],
                self.face_threshold,
                self.thresholds.margin,
                name_at=self.thresholds.for_quality(self.faces.encoder_id, _quality(tr)),
            )
            obs = Observation(
                decision,
                best.concept_id if best else None,
                best.score if best else (found[i][0].score if found[i] else None),
                tuple(found[i]),
            )
            if i in fresh or not tr.votes:
                tr.votes.append(obs)
            else:  # a reused embedding searched again: refresh its vote, do not add one
                tr.votes[-1] = obs
            voted = tr.vote()
            rec = self._recognition(det, tr, voted, embedded=i in fresh)
            if voted.decision == "unknown" and i in fresh and self.unknown is not None:
                strangers.append((rec, det, tr))
            result.recognitions.append(rec)
        if self.objects is not None:
            t = time.perf_counter()
            every = 1 if alone else self.config.object_every
            if self._frame % every == 0 or not self._last_objects:
                self._last_objects = self._objects(image)
            else:
                self._last_objects = [replace(r, embedded=False) for r in self._last_objects]
            result.recognitions[:] = _without_pet_faces(result.recognitions, self._last_objects)
            result.recognitions.extend(self._last_objects)
            timings["objects"] = _ms(t)
        # Unknown faces are clustered as strangers once the object pass has said which of them
        # are a named pet's own face (those are gone from the recognitions).
        at = {id(r): k for k, r in enumerate(result.recognitions)} if strangers else {}
        for rec, det, tr in strangers:
            if id(rec) in at:
                self._cluster(image, det, tr, source)
                result.recognitions[at[id(rec)]] = replace(rec, cluster=tr.cluster)
        if alone:  # nothing of a photo's is kept for the next frame
            self.tracker.reset()
            self._scene = None
            self._last_objects = []
        timings["total"] = _ms(t_start)
        return result

    def _scene_changed(self, image: npt.NDArray[np.uint8], *, check: bool) -> bool:
        """Whether ``image`` starts a new scene (resolution or content, see the module notes).

        With ``check`` false (an independent photo, or tracking off) nothing is compared: the
        caller drops the tracks anyway.
        """
        if not check:
            return False
        sig = scene_signature(image) if self.config.scene_cut > 0 else None
        previous, self._scene = self._scene, (image.shape, sig)
        if previous is None:
            return False
        cut = previous[0] != image.shape or (
            sig is not None
            and previous[1] is not None
            and _correlation(previous[1], sig) < self.config.scene_cut
        )
        self.scene_cuts += cut
        return cut

    def _objects(self, image: npt.NDArray[np.uint8]) -> list[Recognition]:
        """Objects and pets of the memory in the frame (see ``rap_edge.pipeline._objects``).

        With a detector, each detection whose class is a memory category is searched among the
        concepts of that category; unmatched ones are ``unknown``. Without one, proposal
        windows are searched among all object concepts and only matches are kept, the best
        window per concept (a window that matches nothing is not an object).
        """
        from rap_edge.pipeline._objects import (
            PROPOSAL_LABEL,
            object_categories,
        )

        objects = self.objects
        if objects is None or self.memory is None:
            return []
        enc = objects.encoder_id
        if enc not in self.memory.encoders():
            return []
        categories = object_categories(self.memory)
        dets = objects.propose(image, categories)
        if not dets:
            return []
        vectors = objects.embed(objects.detection_crops(image, dets))
        hits = self.memory.search(vectors, k=min(1000, 4 * self.config.k + 8), encoder=enc)
        threshold = self.thresholds.get(enc)
        found: list[ObjectFind] = []
        for det, row in zip(dets, hits, strict=True):
            label = det.label.lower()
            cands = [
                Candidate(h.concept_id, h.name, h.category, h.score)
                for h in row
                if objects.compatible(h.category, label)
            ]
            cands = cands[: self.config.k]
            decision, best = decide(cands, threshold, self.thresholds.margin)
            found.append((det, decision, best, cands))
        # Detector boxes: one per object. Windows (categories the detector has no class for):
        # only matches are kept, the best window per concept (a window matching nothing is
        # not an object).
        boxes = one_box_per_object([f for f in found if f[0].label != PROPOSAL_LABEL])
        best_per: dict[str, ObjectFind] = {}
        for item in found:
            b = item[2]
            if (
                item[0].label == PROPOSAL_LABEL
                and item[1] == "known"
                and b is not None
                and (
                    b.concept_id not in best_per
                    or b.score > (best_per[b.concept_id][2] or b).score
                )
            ):
                best_per[b.concept_id] = item
        found = boxes + list(best_per.values())
        tracks = self.tracker.update(
            self._frame, "object", [(d.x1, d.y1, d.x2, d.y2) for d, _, _, _ in found]
        )
        out = []
        for (det, decision, best, cands), tr in zip(found, tracks, strict=True):
            # The same identity vote as faces: one observation per object pass, so a dog
            # named in 4 of its last 7 passes stays named through a pass that misses.
            tr.votes.append(
                Observation(
                    decision,
                    best.concept_id if best else None,
                    best.score if best else (cands[0].score if cands else None),
                    tuple(cands),
                )
            )
            voted = tr.vote()
            names = {c.concept_id: c.name for o in tr.votes for c in o.candidates}
            name = names.get(voted.concept_id or "") if voted.decision == "known" else None
            out.append(
                Recognition(
                    box=(det.x1, det.y1, det.x2, det.y2),
                    kind="object",
                    detector_score=det.score,
                    track_id=tr.id,
                    decision=voted.decision,
                    concept_id=voted.concept_id if voted.decision == "known" else None,
                    name=name,
                    score=voted.score,
                    candidates=voted.candidates,
                    embedded=True,
                )
            )
        return out

    def _pace_fallback(self, *, found: bool, ran: bool) -> None:
        """When a stream's next second passes may run (see ``PipelineConfig.fallback_every``).

        Every ``fallback_every`` frames while faces are in view; on an empty scene the gap
        doubles after each run that finds nothing, up to :data:`FALLBACK_BACKOFF` times
        ``fallback_every`` (a camera on an empty room would otherwise spend a core on them).
        """
        every = self.config.fallback_every
        if found:
            self._fallback_gap = every
            if ran:
                self._next_fallback = self._frame + every
            else:
                self._next_fallback = min(self._next_fallback, self._frame + every)
        elif ran:
            self._next_fallback = self._frame + self._fallback_gap
            self._fallback_gap = min(self._fallback_gap * 2, every * FALLBACK_BACKOFF)

    def _tiled(self, image: npt.NDArray[np.uint8], *, alone: bool) -> bool:
        """Whether this frame's first pass is tiled (see ``PipelineConfig.auto_tiles``).

        Asked only on frames where the second passes may run (every photo, every
        ``fallback_every``-th stream frame), which bounds the cost on a stream.
        """
        if not self.config.auto_tiles or self.config.tiles != 1:
            return False
        if alone:
            return bool(max(image.shape[:2]) > AUTO_TILE_MIN_SIDE)
        tiled = any(
            tr.kind == "face" and tr.missed > 0 and tr.box[2] - tr.box[0] < SMALL_TRACK_PX
            for tr in self.tracker.tracks.values()
        )
        self.small_track_tiles += tiled
        return tiled

    def _detect(
        self,
        image: npt.NDArray[np.uint8],
        *,
        fallback: bool,
        tiled: bool = False,
        finer: bool = False,
    ) -> list[Detection]:
        return self.faces.detect(
            image,
            max_side=self.config.detect_max_side,
            min_px=self.config.min_face_px,
            tiles=self.config.tiles,
            fallback=fallback,
            tiled=tiled,
            finer=finer,
        )

    def _search(self, vectors: Sequence[npt.NDArray[np.float32] | None]) -> list[list[Candidate]]:
        """Face concepts for each vector, best first, at most ``k`` after the category filter."""
        enc = self.faces.encoder_id
        if not vectors or self.memory is None or enc not in self.memory.encoders():
            return [[] for _ in vectors]
        k = self.config.k
        stack = np.stack([v for v in vectors if v is not None])
        # Ask for k. Only face concepts get face vectors (embed_faces_in_memory), so the
        # category filter below almost never drops a hit; when it does, and a query got all k
        # it asked for (so more may exist), ask again for more. Asking for more up front cost
        # ~4 ms a frame at 10,000 concepts: Memory.search fetches and re-ranks 4 x k
        # candidates per query from SQLite (80 instead of 12 for k=3).
        hits = self.memory.search(stack, k=k, encoder=enc)
        if any(
            len(row) == k and sum(h.category in FACE_CATEGORIES for h in row) < k for row in hits
        ):
            hits = self.memory.search(stack, k=min(1000, 4 * k + 8), encoder=enc)
        per = iter(hits)
        out: list[list[Candidate]] = []
        for v in vectors:
            if v is None:
                out.append([])
                continue
            cands = [
                Candidate(h.concept_id, h.name, h.category, h.score)
                for h in next(per)
                if h.category in FACE_CATEGORIES
            ]
            out.append(cands[:k])
        return out

    def _cluster(
        self, image: npt.NDArray[np.uint8], det: Detection, tr: Track, source: str
    ) -> None:
        assert self.unknown is not None  # noqa: S101 - checked by the caller
        if tr.embedding is None:
            return
        tr.cluster = self.unknown.assign(tr.embedding, cluster=tr.cluster)
        w, h = det.x2 - det.x1, det.y2 - det.y1
        quality = float(w * h * det.score)
        # A crop with a box-sized margin on every side: the aligned chip (padding 0.25) reaches
        # well beyond the face box, and a tighter crop puts black borders into the enrolled
        # chip (measured: cosine 0.85 to the same face with a half-box margin).
        x1, y1 = max(0, int(det.x1 - w)), max(0, int(det.y1 - h))
        x2 = min(image.shape[1], int(det.x2 + w))
        y2 = min(image.shape[0], int(det.y2 + h))
        self.unknown.offer_crop(
            tr.cluster, np.ascontiguousarray(image[y1:y2, x1:x2]), quality, source
        )

    @staticmethod
    def _recognition(
        det: Detection, tr: Track, voted: Observation, *, embedded: bool
    ) -> Recognition:
        pts = tr.extra.get("landmarks")
        landmarks = (
            None if pts is None else tuple((float(x), float(y)) for x, y in np.asarray(pts))
        )
        name = None
        if voted.decision == "known":
            name = next(
                (c.name for c in voted.candidates if c.concept_id == voted.concept_id), None
            )
        return Recognition(
            box=(det.x1, det.y1, det.x2, det.y2),
            kind="face",
            detector_score=det.score,
            track_id=tr.id,
            decision=voted.decision,
            concept_id=voted.concept_id if voted.decision == "known" else None,
            name=name,
            score=voted.score,
            candidates=voted.candidates,
            landmarks=landmarks,
            embedded=embedded,
            cluster=tr.cluster if voted.decision == "unknown" else None,
            quality=_quality(tr),
        )


def _quality(track: Track) -> float | None:
    """The quality of the track's embedded chip (None before one was embedded)."""
    q = track.extra.get("quality")
    return float(q) if isinstance(q, float) else None


def scene_signature(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The frame's 32x24 grey thumbnail, zero-mean and unit-norm (all zeros when flat)."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    thumb = np.asarray(cv2.resize(grey, _THUMB, interpolation=cv2.INTER_AREA), np.float32)
    thumb -= thumb.mean()
    norm = float(np.linalg.norm(thumb))
    return thumb / norm if norm > 1e-3 else np.zeros_like(thumb)  # noqa: PLR2004


def _correlation(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    """Correlation of two signatures; two flat frames are the same scene."""
    if not a.any() and not b.any():
        return 1.0
    return float((a * b).sum())


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
