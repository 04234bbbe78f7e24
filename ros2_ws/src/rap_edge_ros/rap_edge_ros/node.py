"""The rap-edge ROS 2 node: a thin adapter over :class:`rap_edge.live.LiveRuntime`.

Everything that recognises, describes, answers or edits the memory is the runtime's; this
module converts messages to the runtime's arguments and its results back to messages.

Threads (see :mod:`rap_edge.live` for the runtime's own):

* The executor (a :class:`~rclpy.executors.MultiThreadedExecutor`) runs the image
  subscriptions in one mutually exclusive group (convert, ``submit``, return: never waits for
  processing) and the services in a reentrant group, so a slow ``ask`` (an LLM) or a memory
  edit never holds frames back.
* The runtime calls :meth:`RapEdgeNode._on_result` on its processing thread and
  :meth:`RapEdgeNode._on_description` on its generation thread; both only publish (rclpy
  publishers may be called from any thread).
* :func:`main` spins the executor on a thread of its own and waits for SIGINT or SIGTERM, then
  closes the runtime (no publishing after that), shuts the executor and rclpy down, joins the
  spin thread and only then destroys the node (the other order can abort the process at exit).

Plain rclpy API only (ROS 2 Humble and Jazzy); ``vision_msgs`` is optional.
"""

from __future__ import annotations

import array
import logging
import math
import re
import signal
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rap_edge_msgs.msg import (
    ConceptHit,
    ConceptSummary,
    Description,
    Recognition,
    RecognitionArray,
    StrangerSummary,
)
from rap_edge_msgs.srv import (
    AddConcept,
    Ask,
    DismissStranger,
    ListConcepts,
    ListStrangers,
    NameStranger,
    RemoveConcept,
    UpdateConcept,
)
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from rap_edge.app._strangers import DEFAULT_MAX_MB, DEFAULT_RETENTION_DAYS
from rap_edge.errors import InvalidInputError, RapEdgeError
from rap_edge_ros.convert import bgr_to_image_fields, compressed_to_bgr, image_to_bgr
from rap_edge_ros.diagnostics import NO_FRAMES_ERROR_S, Diagnostics, Status

try:  # apt's ros-$ROS_DISTRO-vision-msgs; there is no pip wheel of it
    from vision_msgs.msg import (
        Detection2D,
        Detection2DArray,
        ObjectHypothesisWithPose,
    )
except ImportError:  # pragma: no cover - depends on the machine
    Detection2DArray = None

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import numpy.typing as npt
    from rclpy.parameter import Parameter

    from rap_edge.app import LiveClusters
    from rap_edge.app._cameras import CameraSettings, RateLimit
    from rap_edge.generate import GenerationResult
    from rap_edge.interfaces import Concept
    from rap_edge.live import LiveRuntime
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FrameResult

__all__ = ["NODE_NAME", "RapEdgeLifecycleNode", "RapEdgeNode", "main", "main_lifecycle"]

NODE_NAME = "rap_edge"
CLOSE_TIMEOUT_S = 5.0  # the runtime's threads, then the executor's callbacks
MAX_LOGGED_PROBLEMS = 256  # distinct (topic, problem) pairs logged before going quiet
# Settings set_config takes while frames flow (the other parameters are read-only).
STRANGERS_PURGE_S = 3600.0  # how often the strangers' retention and cap are applied
RUNTIME_PARAMETERS = ("face_threshold", "margin", "top_k", "describe_every")


def _describe(text: str, *, read_only: bool = True, dynamic: bool = False) -> ParameterDescriptor:
    d = ParameterDescriptor(description=text, read_only=read_only)
    if dynamic:
        d.dynamic_typing = True
    return d


# name -> (default, descriptor). Empty string arrays cannot be declared with a static type
# from their default ([] reads as a byte array in rclpy), so compressed_topics is dynamically
# typed and checked here.
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "image_topics": (
        ["/image_raw"],
        _describe("sensor_msgs/Image topics to recognise (sensor-data QoS: best effort, depth 1)"),
    ),
    "compressed_topics": (
        [],
        _describe(
            "sensor_msgs/CompressedImage topics (JPEG or PNG) to recognise; a list of strings",
            dynamic=True,
        ),
    ),
    "memory": (
        "",
        _describe(
            "folder of the rap-edge concept memory (required; "
            "`rap-edge memory init DIR` makes one)"
        ),
    ),
    "models": (
        "",
        _describe("folder of exported models ('': <model store>/onnx, as the rap-edge CLI)"),
    ),
    "face_encoder": (
        "dlib_resnet.json",
        _describe("face embedder manifest in `models`, e.g. dlib_resnet.int8-qdq.json"),
    ),
    "thresholds": (
        "",
        _describe(
            "calibrated thresholds file ('': $RAP_EDGE_THRESHOLDS, else thresholds.json "
            "beside the memory, else beside the models, else each model's manifest value)"
        ),
    ),
    "provider": (
        "auto",
        _describe(
            "ONNX Runtime execution provider: auto, cpu, cuda or tensorrt (the LLM runs on cuda "
            "for cuda/tensorrt)"
        ),
    ),
    "top_k": (
        3,
        _describe("concepts retrieved per face or object, 1..100 (changeable)", read_only=False),
    ),
    "margin": (
        0.02,
        _describe(
            "best-vs-second cosine margin under which a match is 'uncertain', in [0, 1); "
            "negative: the library default (changeable)",
            read_only=False,
        ),
    ),
    "face_threshold": (
        -1.0,
        _describe(
            "cosine threshold for faces in [-1, 1]; negative: the calibrated value (changeable)",
            read_only=False,
        ),
    ),
    "objects": (
        False,
        _describe(
            "also recognise the memory's objects and pets (needs the object embedder in `models`)"
        ),
    ),
    "object_encoder": (
        "mobilenetv2.json",
        _describe("object embedder manifest in `models` (with `objects`)"),
    ),
    "object_detector": (
        "",
        _describe(
            "YOLO-style detector manifest in `models` ('': multi-scale windows; with `objects`)"
        ),
    ),
    "describe": (
        True,
        _describe(
            "describe each camera's scene in words when what it "
            "recognises changes (publishes ~/descriptions)"
        ),
    ),
    "describe_every": (
        0.0,
        _describe(
            "with `describe`, also describe every N seconds while nothing changes, 0..86400 "
            "(0: only on changes; changeable)",
            read_only=False,
        ),
    ),
    "backend": ("auto", _describe("generation backend: auto, ortgenai, transformers or template")),
    "llm": ("", _describe("model folder for the backend ('': the model store's default)")),
    "llm_threads": (0, _describe("CPU threads of the ortgenai decoder (0: every core)")),
    "max_tokens": (96, _describe("longest answer in tokens, 1..4096")),
    "publish_annotated": (
        False,
        _describe(
            "offer ~/annotated (bgr8 frames with boxes and names) and ~/annotated/compressed "
            "(the same as JPEG); each is drawn and published only while it has subscribers"
        ),
    ),
    "camera_settings": (
        "",
        _describe(
            "YAML file of per-camera settings ({cameras: {<topic>: {min_face_size, max_rate, "
            "ignore_zones, objects, describe_every}}}); a field a camera omits is the "
            "parameter's of the same name"
        ),
    ),
    "min_face_size": (
        0,
        _describe("every camera: faces narrower or lower than this many pixels are dropped"),
    ),
    "max_rate": (
        0.0,
        _describe("every camera: at most this many frames/s are processed (0: every frame)"),
    ),
    "ignore_zones": (
        "",
        _describe(
            "every camera: polygons where nothing is recognised, as YAML/JSON text, e.g. "
            "'[[[0,0],[320,0],[320,480],[0,480]]]' (pixels)"
        ),
    ),
    "cluster_unknown": (
        True,
        _describe(
            "cluster unknown faces (strangers) into <memory>/unknown, listed, named and "
            "dismissed with ~/list_strangers, ~/name_stranger and ~/dismiss_stranger"
        ),
    ),
    "strangers_retention_days": (
        DEFAULT_RETENTION_DAYS,
        _describe("strangers' crops older than this many days are deleted (> 0; hourly)"),
    ),
    "strangers_max_mb": (
        DEFAULT_MAX_MB,
        _describe("storage cap of the strangers' crops in MB: past it the oldest go (> 0)"),
    ),
    "annotated_jpeg_quality": (
        80,
        _describe("JPEG quality of ~/annotated/compressed, 1..100"),
    ),
    "stats_period": (
        10.0,
        _describe("seconds between the one-line counters in the log (0: never)"),
    ),
    "diagnostics_period": (
        1.0,
        _describe("seconds between diagnostic_msgs/DiagnosticArray on /diagnostics (0: none)"),
    ),
    "stale_after_s": (
        NO_FRAMES_ERROR_S,
        _describe("/diagnostics: a camera with no frame for this many seconds is an ERROR (> 0)"),
    ),
}


class NodeConfigError(RuntimeError):
    """A parameter the node cannot start with (the message names it)."""


class _LogToRos(logging.Handler):
    """Forward the ``rap_edge`` library's Python log records to the node's ROS logger."""

    def __init__(self, logger: Any) -> None:  # noqa: ANN401 - an RcutilsLogger
        super().__init__(logging.INFO)
        self.logger = logger
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self.logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.logger.warning(text)
            else:
                self.logger.info(text)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _Frame:
    """What travels with a frame through the runtime (``meta``) and comes back with results."""

    __slots__ = ("header", "image", "result", "topic")

    def __init__(self, header: Any, topic: str, image: Any) -> None:  # noqa: ANN401
        self.header = header
        self.topic = topic
        self.image = image  # kept only for ~/annotated
        self.result: FrameResult | None = None  # set by _on_result, read by _on_description


class _BadFrames:
    """Frames that could not be converted: counted per topic, each kind of problem logged once.

    A kind is the error message with its numbers masked (so truncated frames of any length
    are one kind, while each encoding is its own).
    """

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.latest = ""  # the newest problem, "topic: message"
        self._seen: set[tuple[str, str]] = set()

    def add(self, topic: str, what: str, err: Exception) -> None:
        text = str(err)
        key = (topic, re.sub(r"\d+", "#", text))
        with self._lock:
            self.counts[topic] = self.counts.get(topic, 0) + 1
            self.latest = f"{topic}: {text}"
            first = key not in self._seen and len(self._seen) < MAX_LOGGED_PROBLEMS
            if first:
                self._seen.add(key)
            full = len(self._seen) >= MAX_LOGGED_PROBLEMS
        if first:
            self._log(
                f"{topic}: dropping a frame that cannot be converted ({what}): {text} "
                "(logged once per kind of problem; the stats line counts them)"
            )
            if full:
                self._log(f"{MAX_LOGGED_PROBLEMS} kinds of bad frames logged; no more")


def _stamp_seconds(header: Any) -> float | None:  # noqa: ANN401
    """The header's stamp in seconds, or None when it is unset (zero)."""
    sec, nsec = int(header.stamp.sec), int(header.stamp.nanosec)
    return None if sec == 0 and nsec == 0 else sec + nsec * 1e-9


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def recognition_msgs(result: FrameResult | None) -> list[Any]:
    """The frame's recognitions as ``rap_edge_msgs/Recognition`` messages."""
    if result is None:
        return []
    out = []
    for r in result.recognitions:
        msg = Recognition()
        msg.box = [float(v) for v in r.box]
        msg.landmarks = [float(v) for pt in (r.landmarks or ()) for v in pt]
        msg.kind = r.kind
        msg.track_id = int(r.track_id)
        msg.decision = r.decision
        msg.concept_id = r.concept_id or ""
        msg.name = r.name or ""
        msg.score = _nan(r.score)
        msg.candidates = [
            ConceptHit(concept_id=c.concept_id, name=c.name, score=float(c.score))
            for c in r.candidates
        ]
        out.append(msg)
    return out


def concept_summary(concept: Concept) -> Any:  # noqa: ANN401 - a ConceptSummary
    """A ``rap_edge_msgs/ConceptSummary`` of a memory concept."""
    return ConceptSummary(
        id=concept.id,
        name=concept.name,
        category=concept.category,
        info=concept.info,
        aliases=list(concept.aliases),
        image_count=len(concept.images),
    )


def detections_msg(header: Any, result: FrameResult) -> Any:  # noqa: ANN401
    """A ``vision_msgs/Detection2DArray`` of the frame (only where vision_msgs imports).

    Not tested here (no vision_msgs wheel): written against vision_msgs 4.x (Humble, Jazzy),
    where ``BoundingBox2D.center`` is a ``vision_msgs/Pose2D`` with ``position.x/.y`` and
    ``theta``, and ``ObjectHypothesisWithPose.hypothesis`` holds ``class_id`` and ``score``. The
    3.x layout (``center.x`` of a ``geometry_msgs/Pose2D``, ``id`` in the hypothesis) is
    handled too. ``class_id`` is the concept's name when known, else the decision.
    """
    out = Detection2DArray()
    out.header = header
    for r in result.recognitions:
        det = Detection2D()
        det.header = header
        x1, y1, x2, y2 = (float(v) for v in r.box)
        center = det.bbox.center
        if hasattr(center, "position"):  # vision_msgs 4.x
            center.position.x, center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
        else:  # 3.x
            center.x, center.y = (x1 + x2) / 2, (y1 + y2) / 2
        det.bbox.size_x, det.bbox.size_y = x2 - x1, y2 - y1
        if hasattr(det, "id"):
            det.id = str(r.track_id)
        hyp = ObjectHypothesisWithPose()
        label = r.name if r.decision == "known" and r.name else r.decision
        score = 0.0 if r.score is None else float(r.score)
        if hasattr(hyp, "hypothesis"):  # 4.x
            hyp.hypothesis.class_id, hyp.hypothesis.score = label, score
        else:  # 3.x
            hyp.id, hyp.score = label, score
        det.results = [hyp]
        out.detections.append(det)
    return out


class RapEdgeNode(Node):
    """Parameters, topics and services of rap-edge; the work is the runtime's.

    Construct it (declares the parameters), then :meth:`start` (loads the models, opens the
    memory, starts the runtime, creates the topics and services); :meth:`close` stops the
    runtime and closes the memory.
    """

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - Node's keyword arguments
        """Create the node ``rap_edge`` and declare its parameters."""
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        self.runtime: LiveRuntime | None = None
        self.memory: Memory | None = None
        self.strangers: LiveClusters | None = None
        self._bad = _BadFrames(self.get_logger().warning)
        self._sources: list[str] = []
        self._annotate: Callable[..., Any] | None = None
        self._log_handler: _LogToRos | None = None
        self._frames_group = MutuallyExclusiveCallbackGroup()  # subscriptions and the stats
        self._pub_recognitions: Any = None
        self._pub_descriptions: Any = None
        self._pub_annotated: Any = None
        self._pub_annotated_jpeg: Any = None
        self._jpeg_quality = 80
        self.annotated_published = {"raw": 0, "compressed": 0}
        self._pub_detections: Any = None
        self._pub_diagnostics: Any = None
        self._diagnostics: Diagnostics | None = None
        self._camera_settings: dict[str, CameraSettings] = {}  # by configured topic
        # by resolved topic: the settings, the rate limit, whether recognitions are filtered
        self._cameras: dict[str, tuple[CameraSettings, RateLimit, bool]] = {}
        self._provider = ""
        self._made_publishers: list[Any] = []
        self._made_services: list[Any] = []
        self._made_subscriptions: list[Any] = []
        self._made_timers: list[Any] = []
        self._topic_params: tuple[list[str], list[str]] = ([], [])
        self._session_summary: list[str] = []
        self._describing = False
        self._param_callback: Callable[..., Any] | None = None
        self._publishing = True  # off while a lifecycle node is not active

    # -- start and stop ----------------------------------------------------------------------

    def _param(self, name: str) -> Any:  # noqa: ANN401
        return self.get_parameter(name).value

    def _topics(self, name: str) -> list[str]:
        value = self._param(name)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
            msg = f"parameter {name} must be a list of topic names, got {value!r}"
            raise NodeConfigError(msg)
        return [t for t in value if t.strip()]

    def start(self) -> None:
        """Load everything and start; the node then publishes and serves.

        Raises:
            NodeConfigError: a missing or bad parameter.
            RapEdgeError: the models, thresholds, memory or backend cannot be used.
        """
        self._load()
        self._create_publishers(lifecycle=False)
        self._create_services()
        self._create_subscriptions()
        self._announce()

    def _load(self) -> None:
        """Check the parameters, open the session (models, memory) and start the runtime.

        Raises:
            NodeConfigError: a missing or bad parameter.
            RapEdgeError: the models, thresholds, memory or backend cannot be used.
        """
        from rap_edge.app import Session, Settings
        from rap_edge.live import LiveRuntime

        log = self.get_logger()
        self._log_handler = _LogToRos(log)
        lib_log = logging.getLogger("rap_edge")
        lib_log.addHandler(self._log_handler)
        lib_log.setLevel(logging.INFO)
        lib_log.propagate = False

        image_topics = self._topics("image_topics")
        compressed_topics = self._topics("compressed_topics")
        if not image_topics and not compressed_topics:
            msg = "no camera topics: set image_topics and/or compressed_topics"
            raise NodeConfigError(msg)
        memory_dir = str(self._param("memory")).strip()
        if not memory_dir:
            msg = (
                "parameter 'memory' is required: the folder of a rap-edge memory "
                "(--ros-args -p memory:=/path/to/memory; `rap-edge memory init` makes one)"
            )
            raise NodeConfigError(msg)
        # The parameters are settings by the same names, checked by Settings with the same
        # messages as the CLI's flags; '' and negative numbers mean "unset" here.
        provider = str(self._param("provider"))
        margin, face_threshold = self._param("margin"), self._param("face_threshold")
        llm_threads = int(self._param("llm_threads"))
        values: dict[str, Any] = {
            "memory": memory_dir,
            "models": self._param("models") or None,
            "face_encoder": self._param("face_encoder"),
            "object_encoder": self._param("object_encoder"),
            "object_detector": self._param("object_detector") or None,
            "thresholds": self._param("thresholds") or None,
            "provider": provider,
            "top_k": self._param("top_k"),
            "margin": None if margin < 0 else margin,
            "face_threshold": None if face_threshold < 0 else face_threshold,
            "objects": bool(self._param("objects")),
            "describe": bool(self._param("describe")),
            "describe_every": float(self._param("describe_every")),
            "backend": self._param("backend") or None,
            "llm": self._param("llm") or None,
            "llm_provider": "cuda" if provider == "tensorrt" else provider,
            "llm_threads": llm_threads if llm_threads > 0 else None,
            "max_tokens": self._param("max_tokens"),
        }
        for name in ("stats_period", "diagnostics_period"):
            period = self._param(name)
            if not (isinstance(period, float) and 0 <= period < math.inf):
                msg = f"parameter {name} must be 0 (off) or a positive number, got {period!r}"
                raise NodeConfigError(msg)
        quality = self._param("annotated_jpeg_quality")
        if not (isinstance(quality, int) and 1 <= quality <= 100):  # noqa: PLR2004
            msg = f"parameter annotated_jpeg_quality must be 1..100, got {quality!r}"
            raise NodeConfigError(msg)
        self._jpeg_quality = quality
        self._camera_settings = self._load_camera_settings(image_topics + compressed_topics)
        stale = self._param("stale_after_s")
        if not (isinstance(stale, float) and 0 < stale < math.inf):
            msg = f"parameter stale_after_s must be a positive number of seconds, got {stale!r}"
            raise NodeConfigError(msg)
        try:  # before anything is opened: nothing to undo on a bad value
            settings = Settings.from_env().merged(values)
        except RapEdgeError as err:
            raise NodeConfigError(str(err)) from err

        retention, cap = self._param("strangers_retention_days"), self._param("strangers_max_mb")
        for name, value in (("strangers_retention_days", retention), ("strangers_max_mb", cap)):
            if not (isinstance(value, float) and 0 < value < math.inf):
                msg = f"parameter {name} must be a positive number, got {value!r}"
                raise NodeConfigError(msg)

        session = Session.open(settings, memory="required", isolate=True)
        self.memory = session.memory
        try:
            if self._param("cluster_unknown"):
                self.strangers = session.strangers(retention_days=retention, max_mb=cap)
                self._purge_strangers()
            self.runtime = LiveRuntime(
                session,
                on_result=self._on_result,
                on_description=self._on_description,
                close_session=True,
                unknown=self.strangers,
            )
        except BaseException:
            session.close()
            self.memory = self.strangers = None
            raise

        self._topic_params = (image_topics, compressed_topics)
        self._session_summary = session.summary()
        self._provider = str(session.models.encoder.provider)
        self._describing = settings.describe
        if self._param_callback is None:
            self._param_callback = self._on_set_parameters
            self.add_on_set_parameters_callback(self._on_set_parameters)

    def _load_camera_settings(self, topics: list[str]) -> dict[str, CameraSettings]:
        """Every camera's settings: the file's, over the parameters' (checked; no ROS).

        Raises:
            NodeConfigError: a bad value (naming the camera and field), an unreadable file, or
                a camera in the file the node does not subscribe to.
        """
        import yaml

        from rap_edge.app._cameras import CameraSettings, load_camera_settings

        zones_text = str(self._param("ignore_zones")).strip()
        try:
            zones = yaml.safe_load(zones_text) if zones_text else []
        except yaml.YAMLError as err:
            msg = f"parameter ignore_zones is not YAML/JSON: {err}"
            raise NodeConfigError(msg) from err
        try:
            base = CameraSettings.from_mapping(
                "(parameters)",
                {
                    "min_face_size": self._param("min_face_size"),
                    "max_rate": self._param("max_rate"),
                    "ignore_zones": zones,
                },
            )
            path = str(self._param("camera_settings")).strip()
            from_file = load_camera_settings(path, base=base) if path else {}
        except RapEdgeError as err:
            raise NodeConfigError(str(err)) from err
        strangers = sorted(set(from_file) - set(topics))
        if strangers:
            msg = (
                f"{path}: camera(s) {', '.join(strangers)} are not among image_topics or "
                f"compressed_topics ({', '.join(topics)})"
            )
            raise NodeConfigError(msg)
        return {topic: from_file.get(topic, base) for topic in topics}

    def _announce(self) -> None:
        for line in self._session_summary:
            self.get_logger().info(line)
        runtime = self.runtime
        count = len(runtime.list_concepts()) if runtime is not None else 0
        self.get_logger().info(
            f"recognising {', '.join(self._sources)} against {count} concept(s); "
            f"descriptions: {'on' if self._describing else 'off'}"
        )

    def _publisher(self, lifecycle: bool, msg_type: Any, topic: str, qos: Any) -> Any:  # noqa: ANN401
        """A publisher; a lifecycle one (published only while active) on a lifecycle node."""
        if lifecycle:
            pub = self.create_lifecycle_publisher(msg_type, topic, qos)
        else:
            pub = self.create_publisher(msg_type, topic, qos)
        self._made_publishers.append(pub)
        return pub

    def _create_publishers(self, *, lifecycle: bool) -> None:
        results_qos = QoSProfile(depth=10)
        self._pub_recognitions = self._publisher(
            lifecycle, RecognitionArray, "~/recognitions", results_qos
        )
        self._pub_descriptions = self._publisher(
            lifecycle, Description, "~/descriptions", results_qos
        )
        if self._param("publish_annotated"):
            from rap_edge.pipeline import annotate

            self._annotate = annotate
            self._pub_annotated = self._publisher(
                lifecycle, Image, "~/annotated", qos_profile_sensor_data
            )
            self._pub_annotated_jpeg = self._publisher(
                lifecycle, CompressedImage, "~/annotated/compressed", qos_profile_sensor_data
            )
        if float(self._param("diagnostics_period")) > 0:
            self._pub_diagnostics = self._publisher(
                lifecycle, DiagnosticArray, "/diagnostics", QoSProfile(depth=10)
            )
        if Detection2DArray is not None:
            self._pub_detections = self._publisher(
                lifecycle, Detection2DArray, "~/detections", results_qos
            )
        else:
            self.get_logger().info(
                "vision_msgs is not installed: no ~/detections "
                "(rap_edge_msgs/RecognitionArray on ~/recognitions has it all)"
            )

    def _create_services(self) -> None:
        group = ReentrantCallbackGroup()
        for srv_type, name, handler in (
            (AddConcept, "~/add_concept", self._add_concept),
            (UpdateConcept, "~/update_concept", self._update_concept),
            (RemoveConcept, "~/remove_concept", self._remove_concept),
            (ListConcepts, "~/list_concepts", self._list_concepts),
            (Ask, "~/ask", self._ask),
            (ListStrangers, "~/list_strangers", self._list_strangers),
            (NameStranger, "~/name_stranger", self._name_stranger),
            (DismissStranger, "~/dismiss_stranger", self._dismiss_stranger),
        ):
            self._made_services.append(
                self.create_service(srv_type, name, handler, callback_group=group)
            )

    def _create_subscriptions(self) -> None:
        """The camera subscriptions and the stats timer (what ``activate`` starts)."""
        image_topics, compressed_topics = self._topic_params
        self._sources = []
        for topic in image_topics:
            self._subscribe(Image, topic, self._on_image)
        for topic in compressed_topics:
            self._subscribe(CompressedImage, topic, self._on_compressed)
        period = float(self._param("stats_period"))
        if period > 0:
            self._made_timers.append(
                self.create_timer(period, self._log_stats, callback_group=self._frames_group)
            )
        if self.strangers is not None:
            self._made_timers.append(
                self.create_timer(
                    STRANGERS_PURGE_S, self._purge_strangers, callback_group=self._frames_group
                )
            )
        period = float(self._param("diagnostics_period"))
        if period > 0 and self._pub_diagnostics is not None:
            # Counting starts now: a camera that sends nothing is an ERROR after stale_after_s.
            self._diagnostics = Diagnostics(
                self.get_name(), no_frames_error_s=float(self._param("stale_after_s"))
            )
            self._made_timers.append(
                self.create_timer(
                    period, self._publish_diagnostics, callback_group=self._frames_group
                )
            )

    def _destroy_subscriptions(self) -> None:
        """Stop taking frames (what ``deactivate`` does); results in flight are dropped."""
        subs, self._made_subscriptions = self._made_subscriptions, []
        for sub in subs:
            self.destroy_subscription(sub)
        timers, self._made_timers = self._made_timers, []
        for timer in timers:
            self.destroy_timer(timer)

    def _destroy_interfaces(self) -> None:
        """Destroy the subscriptions, publishers and services (what ``cleanup`` does)."""
        self._destroy_subscriptions()
        pubs, self._made_publishers = self._made_publishers, []
        self._pub_recognitions = self._pub_descriptions = None
        self._pub_annotated = self._pub_detections = self._pub_diagnostics = None
        self._pub_annotated_jpeg = None
        self._diagnostics = None
        for pub in pubs:
            destroy = getattr(self, "destroy_lifecycle_publisher", None)
            if destroy is not None and hasattr(pub, "on_activate"):
                destroy(pub)
            else:
                self.destroy_publisher(pub)
        services, self._made_services = self._made_services, []
        for srv in services:
            self.destroy_service(srv)

    def _subscribe(
        self,
        msg_type: Any,  # noqa: ANN401
        topic: str,
        handler: Callable[[str, Any], None],
    ) -> None:
        """Subscribe ``handler(resolved_topic, msg)`` with sensor-data QoS."""
        resolved = [topic]  # the resolved name (namespace, remapping) is known once it exists
        sub = self.create_subscription(
            msg_type,
            topic,
            lambda msg: handler(resolved[0], msg),
            qos_profile_sensor_data,
            callback_group=self._frames_group,
        )
        resolved[0] = sub.topic_name
        from rap_edge.app._cameras import CameraSettings, RateLimit

        settings = self._camera_settings.get(topic, CameraSettings())
        filters = settings.min_face_size > 0 or bool(settings.ignore_zones) or not settings.objects
        self._cameras[sub.topic_name] = (settings, RateLimit(settings.max_rate), filters)
        if self.runtime is not None:
            self.runtime.set_describe_every(sub.topic_name, settings.describe_every)
        self._sources.append(sub.topic_name)
        self._made_subscriptions.append(sub)

    def stop_runtime(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Stop the runtime: no more results or descriptions (services then refuse).

        Returns:
            True when the runtime's threads stopped within ``timeout``.
        """
        runtime, self.runtime = self.runtime, None
        return runtime.close(timeout) if runtime is not None else True

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Stop the runtime if it still runs, and close the memory.

        Returns:
            True when the runtime's threads stopped within ``timeout``.
        """
        ok = self.stop_runtime(timeout)
        self.strangers = None
        memory, self.memory = self.memory, None
        if memory is not None:
            memory.close()
        if self._log_handler is not None:
            logging.getLogger("rap_edge").removeHandler(self._log_handler)
            self._log_handler = None
        return ok

    # -- frames in ---------------------------------------------------------------------------

    def _submit(self, topic: str, bgr: npt.NDArray[np.uint8], header: Any) -> None:  # noqa: ANN401
        runtime = self.runtime
        if runtime is None:
            return
        camera = self._cameras.get(topic)
        if camera is not None and not camera[1].allow(time.monotonic()):
            return  # over the camera's max_rate: skipped before any work
        keep = self._pub_annotated is not None or self._pub_annotated_jpeg is not None
        frame = _Frame(header, topic, bgr if keep else None)
        try:
            runtime.submit(topic, bgr, frame, stamp=_stamp_seconds(header))
        except InvalidInputError as err:  # (a stamp that is not finite cannot come from ROS)
            self._bad.add(topic, "submit", err)

    def _on_image(self, topic: str, msg: Any) -> None:  # noqa: ANN401
        try:
            bgr = image_to_bgr(
                msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data
            )
        except Exception as err:  # noqa: BLE001 - a bad message must not stop the node
            self._bad.add(topic, f"encoding {msg.encoding!r}", err)
            return
        self._submit(topic, bgr, msg.header)

    def _on_compressed(self, topic: str, msg: Any) -> None:  # noqa: ANN401
        try:
            bgr = compressed_to_bgr(msg.format, msg.data)
        except Exception as err:  # noqa: BLE001
            self._bad.add(topic, f"format {msg.format!r}", err)
            return
        self._submit(topic, bgr, msg.header)

    # -- results out (runtime threads) -------------------------------------------------------

    def _on_result(self, source: str, result: FrameResult, frame: _Frame) -> None:
        camera = self._cameras.get(source)
        if camera is not None and camera[2]:
            from rap_edge.app._cameras import filter_recognitions

            # In place, before anything sees it: the runtime offers this same result to the
            # describer after on_result returns, so descriptions see only what is kept.
            result.recognitions = filter_recognitions(camera[0], result.recognitions)
        frame.result = result
        recognitions = self._pub_recognitions
        if not self._publishing or recognitions is None:
            return
        msg = RecognitionArray()
        msg.header = frame.header
        msg.source_topic = source
        msg.recognitions = recognition_msgs(result)
        msg.timing_names = list(result.timings_ms)
        msg.timing_ms = [float(v) for v in result.timings_ms.values()]
        recognitions.publish(msg)
        detections = self._pub_detections
        if detections is not None:
            detections.publish(detections_msg(frame.header, result))
        image, frame.image = frame.image, None
        if image is not None:
            self._publish_annotated(frame.header, image, result)

    def _publish_annotated(self, header: Any, image: Any, result: FrameResult) -> None:  # noqa: ANN401
        """Draw the frame only if someone subscribes to ~/annotated or its JPEG; publish."""
        raw, jpeg = self._pub_annotated, self._pub_annotated_jpeg
        want_raw = raw is not None and raw.get_subscription_count() > 0
        want_jpeg = jpeg is not None and jpeg.get_subscription_count() > 0
        if not (want_raw or want_jpeg) or self._annotate is None:
            return
        drawn = self._annotate(image, result, None)
        if want_raw:
            fields = bgr_to_image_fields(drawn)
            img = Image(
                header=header,
                encoding=fields["encoding"],
                height=fields["height"],
                width=fields["width"],
                step=fields["step"],
                is_bigendian=fields["is_bigendian"],
            )
            img.data = array.array("B", fields["data"])  # no per-byte check
            raw.publish(img)
            self.annotated_published["raw"] += 1
        if want_jpeg:
            import cv2

            ok, buf = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, self._jpeg_quality])
            if not ok:
                self.get_logger().warning("~/annotated/compressed: JPEG encoding failed")
                return
            msg = CompressedImage(header=header, format="jpeg")
            msg.data = array.array("B", buf.tobytes())
            jpeg.publish(msg)
            self.annotated_published["compressed"] += 1

    def _on_description(
        self, source: str, index: int | None, answer: GenerationResult, frame: _Frame
    ) -> None:
        del source, index
        pub = self._pub_descriptions
        if not self._publishing or pub is None:
            return
        msg = Description()
        msg.header = frame.header
        msg.recognitions = recognition_msgs(frame.result)
        msg.text = answer.text
        msg.backend = answer.backend
        msg.regenerated = bool(answer.regenerated)
        msg.fell_back = bool(answer.fell_back)
        msg.first_token_ms = _nan(answer.first_token_ms)
        msg.total_ms = float(answer.total_ms)
        pub.publish(msg)

    def _log_stats(self) -> None:
        runtime = self.runtime
        if runtime is None:
            return
        stats = runtime.stats()
        parts = []
        for name in self._sources:
            s = stats.sources.get(name)
            received, processed, dropped, errors = (
                (s.received, s.processed, s.dropped, s.errors) if s else (0, 0, 0, 0)
            )
            parts.append(
                f"{name}: received {received + self._bad.counts.get(name, 0)} "
                f"processed {processed} dropped {dropped} errors {errors} "
                f"unconvertible {self._bad.counts.get(name, 0)}"
            )
        tail = f"descriptions {stats.described['delivered']}; edits {stats.edits}"
        if stats.callback_errors:
            tail += f"; callback errors {stats.callback_errors}"
        self.get_logger().info(f"stats: {'; '.join(parts)}; {tail}")

    def diagnostic_statuses(self) -> list[Status]:
        """The statuses of every camera and of the runtime, now (see :mod:`.diagnostics`)."""
        diagnostics = self._diagnostics
        if diagnostics is None:
            return []
        runtime = self.runtime
        stats = runtime.stats() if runtime is not None else None
        memory_size = None
        llm = ""
        if runtime is not None:
            try:
                memory_size = len(runtime.list_concepts())
            except RapEdgeError:  # closing meanwhile
                memory_size = None
            if self._describing:
                llm = runtime.session.backend_note or "not loaded yet"
            else:
                llm = "off (describe is false)"
        return diagnostics.statuses(
            list(self._sources),
            stats,
            unconvertible=dict(self._bad.counts),
            provider=self._provider,
            memory_size=memory_size,
            llm=llm,
            latest_error=self._latest_error(stats),
            extra={
                "annotated_published": str(self.annotated_published["raw"]),
                "annotated_compressed_published": str(self.annotated_published["compressed"]),
            },
        )

    def _latest_error(self, stats: Any) -> str:  # noqa: ANN401 - a LiveStats or None
        """The newest problem: a frame that could not be converted, else a failed frame."""
        if self._bad.latest:
            return self._bad.latest
        if stats is None:
            return ""
        errors = [e for s in stats.sources.values() for e in s.last_errors]
        return errors[-1] if errors else ""

    def _publish_diagnostics(self) -> None:
        pub = self._pub_diagnostics
        if not self._publishing or pub is None:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [
            DiagnosticStatus(
                level=bytes([s.level]),
                name=s.name,
                message=s.message,
                hardware_id=s.hardware_id,
                values=[KeyValue(key=k, value=v) for k, v in s.values.items()],
            )
            for s in self.diagnostic_statuses()
        ]
        pub.publish(msg)

    # -- parameters --------------------------------------------------------------------------

    def _on_set_parameters(self, params: list[Parameter]) -> Any:  # noqa: ANN401
        changes: dict[str, Any] = {}
        for p in params:
            if p.name not in RUNTIME_PARAMETERS:
                continue
            value = p.value
            if p.name in {"face_threshold", "margin"}:
                value = None if isinstance(value, float) and value < 0 else value
            changes[p.name] = value
        runtime = self.runtime
        if not changes or runtime is None:
            return SetParametersResult(successful=True)
        try:
            runtime.set_config(**changes)
        except RapEdgeError as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.get_logger().info(
            "settings changed: "
            + ", ".join(f"{k}={'default' if v is None else v}" for k, v in changes.items())
        )
        return SetParametersResult(successful=True)

    # -- services (reentrant group: may run next to each other and to frames) ------------------

    def _images(self, images: list[Any]) -> list[npt.NDArray[np.uint8]]:
        out = []
        for i, img in enumerate(images):
            try:
                out.append(
                    image_to_bgr(
                        img.encoding, img.height, img.width, img.step, img.is_bigendian, img.data
                    )
                )
            except ValueError as err:
                msg = f"image #{i + 1}: {err}"
                raise InvalidInputError(msg) from err
        return out

    def _failed(self, what: str, err: Exception) -> str:
        if isinstance(err, RapEdgeError):
            # The object-enrollment refusal names the CLI's flag; here it is a request field.
            return str(err).replace("--whole-image", "whole_image: true")
        self.get_logger().error(f"{what} failed: {type(err).__name__}: {err}")
        return f"internal error: {type(err).__name__}: {err}"

    def _runtime(self) -> LiveRuntime:
        runtime = self.runtime
        if runtime is None:
            msg = "the node is shutting down"
            raise InvalidInputError(msg)
        return runtime

    def _add_concept(self, req: Any, resp: Any) -> Any:  # noqa: ANN401
        try:
            concept = self._runtime().add_concept(
                req.name,
                req.category,
                info=req.info,
                aliases=list(req.aliases),
                images=self._images(req.images),
                whole_image=bool(req.whole_image),
            )
        except Exception as err:  # noqa: BLE001 - answered, never raised into the executor
            resp.success, resp.message = False, self._failed("add_concept", err)
            return resp
        resp.success, resp.message = True, f"added {concept.name} ({concept.id})"
        resp.concept = concept_summary(concept)
        self.get_logger().info(
            f"memory: added {concept.name} ({concept.id}, {len(concept.images)} image(s))"
        )
        return resp

    def _update_concept(self, req: Any, resp: Any) -> Any:  # noqa: ANN401
        try:
            concept = self._runtime().update_concept(
                req.id_or_name,
                name=req.name or None,
                category=req.category or None,
                info=req.info or None,
                add_images=self._images(req.add_images),
                whole_image=bool(req.whole_image),
            )
        except Exception as err:  # noqa: BLE001
            resp.success, resp.message = False, self._failed("update_concept", err)
            return resp
        resp.success, resp.message = True, f"updated {concept.name} ({concept.id})"
        resp.concept = concept_summary(concept)
        self.get_logger().info(f"memory: updated {concept.name} ({concept.id})")
        return resp

    def _remove_concept(self, req: Any, resp: Any) -> Any:  # noqa: ANN401
        try:
            concept = self._runtime().remove_concept(req.id_or_name)
        except Exception as err:  # noqa: BLE001
            resp.success, resp.message = False, self._failed("remove_concept", err)
            return resp
        resp.success, resp.message = True, f"removed {concept.name} ({concept.id})"
        self.get_logger().info(f"memory: removed {concept.name} ({concept.id})")
        return resp

    def _list_concepts(self, req: Any, resp: Any) -> Any:  # noqa: ANN401
        try:
            resp.concepts = [
                concept_summary(c) for c in self._runtime().list_concepts(req.category)
            ]
        except Exception as err:  # noqa: BLE001 - the response has no message field
            self._failed("list_concepts", err)
            resp.concepts = []
        return resp

    def _strangers(self) -> LiveClusters:
        self._runtime()
        strangers = self.strangers
        if strangers is None:
            msg = "strangers are not clustered here (parameter cluster_unknown is false)"
            raise InvalidInputError(msg)
        return strangers

    def _purge_strangers(self) -> None:
        """Apply the strangers' retention and storage cap (at start, then hourly)."""
        strangers = self.strangers
        if strangers is None:
            return
        try:
            removed = strangers.purge()
        except Exception as err:  # noqa: BLE001 - logged; the node keeps running
            self._failed("purging the strangers' crops", err)
            return
        if removed:
            self.get_logger().info(
                f"strangers: deleted {removed} crop(s) past the retention "
                f"({strangers.retention_days:g} days) or the cap "
                f"({strangers.max_bytes / 1e6:g} MB)"
            )

    def _list_strangers(self, req: Any, resp: Any) -> Any:  # noqa: ANN401
        del req
        try:
            listing = self._strangers().listing()
        except Exception as err:  # noqa: BLE001
            resp.success, resp.message = False, self._failed("list_strangers", err)
            return resp
        out = []
        for c in listing:
            msg = StrangerSummary()
            msg.id, msg.count, msg.crops = c["id"], int(c["count"]), int(c["crops"])
            msg.first_seen, msg.last_seen = float(c["first_seen"]), float(c["last_seen"])
            msg.cameras = list(c["cameras"])
            out.append(msg)
        resp.strangers = out
        resp.success, resp.message = True, f"{len(out)} stranger(s)"
        return resp

    def _name_stranger(self, req: Any, resp: Any) -> Any:  # noqa: ANN401
        try:
            strangers = self._strangers()
            strangers.get(req.id)  # names the known clusters when there is no such one
            concept, crops = self._runtime().session.enroll_unknown(
                strangers,
                req.id,
                name=req.name,
                category=req.category or "person",
                info=req.info,
            )
        except Exception as err:  # noqa: BLE001
            resp.success, resp.message = False, self._failed("name_stranger", err)
            return resp
        resp.success = True
        resp.message = f"named stranger {req.id} {concept.name} ({concept.id}, {crops} crop(s))"
        resp.concept = concept_summary(concept)
        self.get_logger().info(f"memory: {resp.message}")
        return resp

    def _dismiss_stranger(self, req: Any, resp: Any) -> Any:  # noqa: ANN401
        try:
            self._strangers().dismiss(req.id)
        except Exception as err:  # noqa: BLE001
            resp.success, resp.message = False, self._failed("dismiss_stranger", err)
            return resp
        resp.success, resp.message = True, f"dismissed stranger {req.id} (crops deleted)"
        self.get_logger().info(f"strangers: {resp.message}")
        return resp

    def _ask(self, req: Any, resp: Any) -> Any:  # noqa: ANN401
        try:
            image = self._images([req.image])[0] if req.has_image else None
            answer, result = self._runtime().ask(req.question, image=image)
        except Exception as err:  # noqa: BLE001
            resp.success, resp.message = False, self._failed("ask", err)
            return resp
        resp.success = True
        resp.answer, resp.backend = answer.text, answer.backend
        resp.recognitions = recognition_msgs(result)
        if answer.fell_back:
            resp.message = "the template answered (the model's answer failed the name guard)"
        return resp


class RapEdgeLifecycleNode(RapEdgeNode, LifecycleNode):
    """The same node, managed (``rclpy.lifecycle``): nothing is loaded until ``configure``.

    * ``configure``: check the parameters, load the models, open the memory, start the runtime
      (as :meth:`RapEdgeNode.start`), create the publishers (inactive) and the services. A
      failure (a bad parameter, missing models, an unusable or locked memory) undoes what was
      opened, logs the reason, keeps it in :attr:`last_error` and returns FAILURE: the node
      stays *unconfigured* and may be configured again.
    * ``activate``: subscribe to the cameras, start the stats timer, activate the publishers.
    * ``deactivate``: unsubscribe and stop the timer (frames are no longer taken; results
      still in flight are dropped), deactivate the publishers.
    * ``cleanup``: stop the runtime, close the memory, destroy publishers and services.
    * ``shutdown`` (from any state): the same, then :attr:`finished` is set and
      :func:`main_lifecycle` exits with code 0.

    With the parameter ``autostart`` true, :func:`main_lifecycle` configures and activates it
    at start (for users without a lifecycle manager).
    """

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - Node's keyword arguments
        """Create the node ``rap_edge`` (unconfigured) and declare its parameters."""
        super().__init__(**kwargs)
        self.declare_parameter(
            "autostart",
            value=False,
            descriptor=_describe("configure and activate at start (the lifecycle node only)"),
        )
        self._publishing = False
        self.last_error = ""
        self.finished = threading.Event()
        # rclpy raises out of the executor on a transition the current state does not have
        # (which stops spinning): answer success=False instead and keep the state.
        service = self._service_change_state
        handle = service.callback

        def change_state(req: Any, resp: Any) -> Any:  # noqa: ANN401
            try:
                return handle(req, resp)
            except Exception as err:  # noqa: BLE001 - refused, not fatal
                self.get_logger().warning(
                    f"transition {req.transition.id} {req.transition.label!r} refused in "
                    f"state {self._state_machine.current_state[1]}: {err}"
                )
                resp.success = False
                return resp

        service.callback = change_state

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the models and the memory, start the runtime, create publishers and services."""
        try:
            self._load()
            self._create_publishers(lifecycle=True)
            self._create_services()
        except Exception as err:  # noqa: BLE001 - reported; the node stays unconfigured
            known = isinstance(err, (NodeConfigError, RapEdgeError))
            self.last_error = str(err) if known else f"{type(err).__name__}: {err}"
            self.get_logger().error(
                f"configure failed, staying unconfigured: "
                f"{self.last_error if known else traceback.format_exc()}"
            )
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.last_error = ""
        self.get_logger().info("configured (inactive): models and memory loaded")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the cameras and activate the publishers."""
        self._create_subscriptions()
        self._publishing = True
        ret = super().on_activate(state)
        self._announce()
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop taking frames and deactivate the publishers."""
        self._publishing = False
        self._destroy_subscriptions()
        self.get_logger().info("deactivated: not taking frames")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the runtime, close the memory, destroy the publishers and services."""
        ret = super().on_cleanup(state)
        self._release()
        self.get_logger().info("cleaned up: runtime stopped, memory closed")
        return ret

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, from whichever state, and let :func:`main_lifecycle` exit."""
        ret = super().on_shutdown(state)
        self._release()
        self.get_logger().info("shut down")
        self.finished.set()
        return ret

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything and go back to unconfigured."""
        self._release()
        self.get_logger().error(f"error in a transition; back to unconfigured ({state.label})")
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        self._publishing = False
        if not self.close(CLOSE_TIMEOUT_S):  # the runtime first: nothing publishes after it
            self.get_logger().warning(f"the runtime did not stop within {CLOSE_TIMEOUT_S:.0f} s")
        self._destroy_interfaces()


def _init_rclpy(args: list[str] | None) -> None:
    """``rclpy.init`` without rclpy's signal handlers (main installs its own)."""
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except (ImportError, TypeError):  # an rclpy without the option: its handlers stay
        rclpy.init(args=args)


def _init_rclpy_until_signal(args: list[str] | None) -> threading.Event:
    """Initialise rclpy; the event returned is set by SIGINT or SIGTERM."""
    _init_rclpy(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        del signum
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    return stop


def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT or SIGTERM; exit code 0 then, non-zero if it cannot start."""
    stop = _init_rclpy_until_signal(args)

    try:
        node = RapEdgeNode()  # a parameter override of the wrong type fails here
    except Exception as err:  # noqa: BLE001 - reported, then a clean exit
        get_logger(NODE_NAME).error(f"cannot start: {err}")
        rclpy.try_shutdown()
        return 1
    try:
        node.start()
    except Exception as err:  # noqa: BLE001 - reported, then a clean exit
        known = isinstance(err, (NodeConfigError, RapEdgeError))
        node.get_logger().error(f"cannot start: {err if known else traceback.format_exc()}")
        _stop(node)
        return err.exit_code if isinstance(err, RapEdgeError) else 1
    if stop.is_set():  # a signal while the models loaded
        _stop(node)
        return 0

    # Enough threads for frames, a long ask and an edit at the same time.
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name="rap-edge-spin", daemon=True)
    spinner.start()
    while not stop.wait(0.2):
        if not spinner.is_alive():  # the context was shut down from elsewhere
            break
    node.get_logger().info("shutting down")
    _stop(node, executor, spinner)
    return 0


def main_lifecycle(args: list[str] | None = None) -> int:
    """Run the lifecycle node until SIGINT, SIGTERM or its ``shutdown`` transition.

    It starts unconfigured (a lifecycle manager, ``ros2 lifecycle set`` or
    ``python -m rap_edge_ros.bringup`` drives it), or configured and active with the
    parameter ``autostart``. Exit code 0 after a clean stop; with ``autostart``, a failed
    configure exits with the error's code (1 for a bad parameter).
    """
    stop = _init_rclpy_until_signal(args)
    try:
        node = RapEdgeLifecycleNode()
    except Exception as err:  # noqa: BLE001 - reported, then a clean exit
        get_logger(NODE_NAME).error(f"cannot start: {err}")
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name="rap-edge-spin", daemon=True)
    spinner.start()
    code = 0
    if node.get_parameter("autostart").value:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().error(f"autostart: configure failed: {node.last_error}")
            code = 1
            stop.set()
        elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().error("autostart: activate failed")
            code = 1
            stop.set()
    while not stop.wait(0.2):
        if node.finished.is_set() or not spinner.is_alive():
            break
    node.get_logger().info("shutting down")
    if not node.finished.is_set():
        try:
            node.trigger_shutdown()
        except Exception as err:  # noqa: BLE001 - e.g. already finalized; release anyway
            node.get_logger().warning(f"shutdown transition: {err}")
    _stop(node, executor, spinner)
    return code


def _stop(
    node: RapEdgeNode,
    executor: MultiThreadedExecutor | None = None,
    spinner: threading.Thread | None = None,
) -> None:
    """Stop in an order that cannot abort the process.

    The runtime first (nothing is published after it), then the executor (service calls in
    flight finish, within the timeout), the memory, rclpy, the spin thread, and the node last.
    """
    if not node.stop_runtime(CLOSE_TIMEOUT_S):
        node.get_logger().warning(f"the runtime did not stop within {CLOSE_TIMEOUT_S:.0f} s")
    if executor is not None:
        executor.shutdown(timeout_sec=CLOSE_TIMEOUT_S)
    node.close()
    rclpy.try_shutdown()
    if spinner is not None:
        spinner.join(CLOSE_TIMEOUT_S)
    node.destroy_node()


if __name__ == "__main__":
    sys.exit(main_lifecycle() if "--lifecycle" in sys.argv[1:2] else main())
