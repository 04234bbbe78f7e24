"""Retrieve: from camera frames to tracked, named recognitions (no ROS, no heavy imports).

:class:`Pipeline` runs the face path (SSD detector, dlib 5-point landmarks, aligned chip,
dlib ResNet descriptor) against a :class:`~rap_edge.memory.Memory`, decides known / unknown /
uncertain with calibrated thresholds and a margin rule, tracks faces across frames, reuses
embeddings, and clusters unknown faces for later enrollment.
"""

from __future__ import annotations

from rap_edge.embed import embed_faces_in_memory, embed_objects_in_memory
from rap_edge.pipeline._draw import annotate
from rap_edge.pipeline._evaluate import (
    EvalReport,
    LabelledSet,
    PipelineRecognizer,
    Recognizer,
    calibrate_labelled,
    calibrate_low_quality,
    calibrate_threshold,
    degraded_probes,
    evaluate,
    face_probes,
    face_vectors,
    low_quality_threshold,
    score,
)
from rap_edge.pipeline._faces import FACE_CATEGORIES, FaceEmbedder, FaceModels
from rap_edge.pipeline._objects import (
    OBJECT_EMBEDDER,
    PROPOSAL_LABEL,
    ObjectEmbedder,
    ObjectModels,
    is_object_category,
    object_categories,
    proposal_windows,
)
from rap_edge.pipeline._pipeline import SCENE_CUT, Pipeline, PipelineConfig, scene_signature
from rap_edge.pipeline._scoring import (
    DEFAULT_MARGIN,
    REPO_THRESHOLDS,
    THRESHOLDS_ENV,
    Thresholds,
    decide,
    default_thresholds_path,
)
from rap_edge.pipeline._text import mentioned_concepts
from rap_edge.pipeline._tracker import Observation, Track, Tracker, box_iou
from rap_edge.pipeline._types import Candidate, Decision, FrameResult, Recognition
from rap_edge.pipeline._unknown import Cluster, UnknownClusters

__all__ = [
    "DEFAULT_MARGIN",
    "FACE_CATEGORIES",
    "OBJECT_EMBEDDER",
    "PROPOSAL_LABEL",
    "REPO_THRESHOLDS",
    "SCENE_CUT",
    "THRESHOLDS_ENV",
    "Candidate",
    "Cluster",
    "Decision",
    "EvalReport",
    "FaceEmbedder",
    "FaceModels",
    "FrameResult",
    "LabelledSet",
    "ObjectEmbedder",
    "ObjectModels",
    "Observation",
    "Pipeline",
    "PipelineConfig",
    "PipelineRecognizer",
    "Recognition",
    "Recognizer",
    "Thresholds",
    "Track",
    "Tracker",
    "UnknownClusters",
    "annotate",
    "box_iou",
    "calibrate_labelled",
    "calibrate_low_quality",
    "calibrate_threshold",
    "decide",
    "default_thresholds_path",
    "degraded_probes",
    "embed_faces_in_memory",
    "embed_objects_in_memory",
    "evaluate",
    "face_probes",
    "face_vectors",
    "is_object_category",
    "low_quality_threshold",
    "mentioned_concepts",
    "object_categories",
    "proposal_windows",
    "scene_signature",
    "score",
]
