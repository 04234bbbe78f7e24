"""Records the pipeline returns.

One :class:`FrameResult` per frame, one :class:`Recognition` per detected face or object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Candidate", "Decision", "FrameResult", "Recognition"]

Decision = Literal["known", "unknown", "uncertain"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A concept the memory returned for an observation, with its cosine score."""

    concept_id: str
    name: str
    category: str
    score: float


@dataclass(frozen=True, slots=True)
class Recognition:
    """One face or object in a frame, after tracking and the identity vote.

    Attributes:
        box: (x1, y1, x2, y2) in the frame's pixels.
        kind: ``face`` or ``object``.
        detector_score: The detector's confidence.
        track_id: Id of the track across frames (stable while the track lives).
        decision: ``known`` (a concept above threshold, clear of the runner-up),
            ``uncertain`` (two concepts too close, or the track's votes disagree) or
            ``unknown`` (nothing above threshold).
        concept_id: The decided concept (None unless known).
        name: Its name (None unless known).
        score: The decided concept's score (for unknown: the best score seen, or None).
        candidates: The memory's best concepts for the latest embedding, best first.
        landmarks: Five (x, y) points for faces, else None.
        embedded: Whether this frame computed a new embedding for the track (else reused).
        cluster: Unknown-face cluster id, when the face is unknown and clustering is on.
        quality: Face quality 0..1 of the latest embedded chip (size, sharpness, contrast; see
            ``rap_edge.pipeline._quality``); None for objects.
    """

    box: tuple[float, float, float, float]
    kind: str
    detector_score: float
    track_id: int
    decision: Decision
    concept_id: str | None
    name: str | None
    score: float | None
    candidates: tuple[Candidate, ...] = ()
    landmarks: tuple[tuple[float, float], ...] | None = None
    embedded: bool = True
    cluster: str | None = None
    quality: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (rounded floats)."""
        return {
            "kind": self.kind,
            "box": [round(v, 1) for v in self.box],
            "detector_score": round(self.detector_score, 4),
            "track": self.track_id,
            "decision": self.decision,
            "concept_id": self.concept_id,
            "name": self.name,
            "score": None if self.score is None else round(self.score, 4),
            "candidates": [
                {"concept_id": c.concept_id, "name": c.name, "score": round(c.score, 4)}
                for c in self.candidates
            ],
            "embedded": self.embedded,
            "cluster": self.cluster,
            "quality": None if self.quality is None else round(self.quality, 3),
        }


@dataclass(slots=True)
class FrameResult:
    """Everything the pipeline found in one frame.

    Attributes:
        index: Frame number within the stream (as given to ``process``).
        timestamp: Seconds (source time when known, else wall-clock).
        width: Frame width in pixels.
        height: Frame height in pixels.
        recognitions: One per detection, in detection order.
        timings_ms: Milliseconds per stage (``detect``, ``landmarks``, ``embed``, ``search``,
            ``track``, ``total``).
        scene_cut: The tracks were dropped before this frame because the scene changed (its
            resolution, or its content very strongly; see ``PipelineConfig.scene_cut``).
    """

    index: int
    timestamp: float
    width: int
    height: int
    recognitions: list[Recognition] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    scene_cut: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "frame": self.index,
            "timestamp": round(self.timestamp, 6),
            "size": [self.width, self.height],
            "recognitions": [r.to_json() for r in self.recognitions],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
