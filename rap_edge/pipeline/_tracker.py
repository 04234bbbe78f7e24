"""Multi-object tracking by box overlap, with an identity vote per track.

Detections are matched to live tracks of the same kind greedily by IoU (best pairs first,
at least ``min_iou``). Unmatched detections start tracks; tracks unmatched for more than
``max_missed`` frames end. Each track keeps its last embedding, the box it was computed on and
the frame it was computed at, so the pipeline can reuse it (see :meth:`Track.needs_embedding`),
and a window of recent decisions from which its identity is voted.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from rap_edge.pipeline._types import Candidate, Decision

__all__ = ["Observation", "Track", "Tracker", "box_iou", "inside_share"]


def box_iou(
    a: Sequence[float] | npt.NDArray[np.floating], b: Sequence[float] | npt.NDArray[np.floating]
) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = float(iw * ih)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def inside_share(
    a: Sequence[float] | npt.NDArray[np.floating], b: Sequence[float] | npt.NDArray[np.floating]
) -> float:
    """The share of box ``a``'s area that lies inside box ``b`` (0 for an empty ``a``)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    area = float((a[2] - a[0]) * (a[3] - a[1]))
    if iw <= 0 or ih <= 0 or area <= 0:
        return 0.0
    return float(iw * ih) / area


@dataclass(frozen=True, slots=True)
class Observation:
    """One embedded look at a track: its decision and the candidates behind it."""

    decision: Decision
    concept_id: str | None
    score: float | None
    candidates: tuple[Candidate, ...]


@dataclass(slots=True)
class Track:
    """A face or object followed across frames."""

    id: int
    kind: str
    box: tuple[float, float, float, float]
    first_frame: int
    last_frame: int
    votes: deque[Observation]
    embedding: npt.NDArray[np.float32] | None = None
    embedded_box: tuple[float, float, float, float] | None = None
    embedded_frame: int = -1
    missed: int = 0
    cluster: str | None = None
    best_quality: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    def needs_embedding(self, frame: int, every: int, min_iou: float) -> bool:
        """True when the embedding is missing, older than ``every`` frames, or the box moved.

        ``every`` <= 1 means every frame.
        """
        if self.embedding is None or self.embedded_box is None or every <= 1:
            return True
        if frame - self.embedded_frame >= every:
            return True
        return box_iou(self.box, self.embedded_box) < min_iou

    def vote(self) -> Observation:
        """The track's identity by majority over its recent observations.

        Each observation votes for its concept (known), ``unknown`` or ``uncertain``. A concept
        that wins a strict majority of the window is ``known`` with the mean score of its
        votes; ``unknown`` winning a majority is ``unknown``; anything else is ``uncertain``.
        The latest observation's candidates are reported.
        """
        latest = self.votes[-1]
        if len(self.votes) == 1:
            return latest
        labels = [o.concept_id if o.decision == "known" else o.decision for o in self.votes]
        label, count = Counter(labels).most_common(1)[0]
        if 2 * count <= len(labels):
            best = max(self.votes, key=lambda o: o.score or -1.0)
            return Observation("uncertain", best.concept_id, best.score, latest.candidates)
        if label == "unknown":
            scores = [
                o.score for o in self.votes if o.decision == "unknown" and o.score is not None
            ]
            return Observation("unknown", None, max(scores) if scores else None, latest.candidates)
        if label == "uncertain":
            return Observation("uncertain", latest.concept_id, latest.score, latest.candidates)
        scores = [
            o.score
            for o in self.votes
            if o.concept_id == label and o.decision == "known" and o.score is not None
        ]
        return Observation("known", label, float(np.mean(scores)), latest.candidates)


class Tracker:
    """Greedy IoU tracker (per kind)."""

    def __init__(self, *, min_iou: float = 0.3, max_missed: int = 10, window: int = 7) -> None:
        """Configure matching.

        Args:
            min_iou: Least IoU for a detection to continue a track.
            max_missed: Frames a track survives without a detection.
            window: Observations kept for the identity vote.
        """
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.window = window
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(
        self, frame: int, kind: str, boxes: Sequence[tuple[float, float, float, float]]
    ) -> list[Track]:
        """Match this frame's boxes of ``kind``; return the track of each box, in order."""
        live = [t for t in self.tracks.values() if t.kind == kind]
        pairs = sorted(
            (
                (box_iou(t.box, b), ti, bi)
                for ti, t in enumerate(live)
                for bi, b in enumerate(boxes)
            ),
            reverse=True,
        )
        out: list[Track | None] = [None] * len(boxes)
        used: set[int] = set()
        for iou, ti, bi in pairs:
            if iou < self.min_iou:
                break
            if ti in used or out[bi] is not None:
                continue
            used.add(ti)
            track = live[ti]
            track.box, track.last_frame, track.missed = boxes[bi], frame, 0
            out[bi] = track
        for bi, box in enumerate(boxes):
            if out[bi] is None:
                track = Track(self._next_id, kind, box, frame, frame, deque(maxlen=self.window))
                self._next_id += 1
                self.tracks[track.id] = track
                out[bi] = track
        for ti, track in enumerate(live):
            if ti not in used:
                track.missed += 1
                if track.missed > self.max_missed:
                    del self.tracks[track.id]
        return [t for t in out if t is not None]

    def reset(self) -> None:
        """Forget every track (e.g. between unrelated images)."""
        self.tracks.clear()
