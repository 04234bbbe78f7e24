"""Options shared by the commands that open a session, and the one way they become Settings.

Every option's default is "not given" (None), so that a value can come, in rising order of
precedence, from the defaults, a ``--config FILE.yaml``, ``RAP_EDGE_*`` environment variables
and the command line, all checked by :class:`rap_edge.app.Settings` with the same messages.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.app._settings import PROVIDERS
from rap_edge.errors import InvalidInputError
from rap_edge.runtime import LLM_PROVIDERS

if TYPE_CHECKING:
    import argparse

    from rap_edge.app import Session, Settings
    from rap_edge.memory import Memory
    from rap_edge.sources import ReconnectPolicy

__all__ = [
    "add_config_option",
    "add_generation_options",
    "add_memory_option",
    "add_model_options",
    "add_object_options",
    "add_stream_options",
    "open_session",
    "settings_from_args",
    "stream_policy",
]

# argparse dest -> Settings field, where they differ; ``no_*`` flags are negated.
_NEGATED = {"no_flip": "flip", "no_track": "track"}
_FIELDS = (
    "memory",
    "models",
    "face_encoder",
    "object_encoder",
    "object_detector",
    "provider",
    "thresholds",
    "margin",
    "tiles",
    "objects",
    "embed_every",
    "describe",
    "describe_every",
    "max_concepts",
    "backend",
    "llm",
    "llm_provider",
    "llm_threads",
    "vision_onnx",
    "max_tokens",
)


def add_config_option(p: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml``: settings by field name (flags and RAP_EDGE_* override them)."""
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="YAML file of settings by name (e.g. `tiles: 2`, `face_threshold: 0.92`); "
        "RAP_EDGE_<NAME> environment variables override it, flags override both",
    )


def add_memory_option(p: argparse.ArgumentParser) -> None:
    """``--memory`` for commands that can also run without a memory."""
    p.add_argument(
        "--memory",
        metavar="DIR",
        default=None,
        help="concept memory (default: $RAP_EDGE_MEMORY, else the user data folder's "
        "memory if it exists)",
    )


def add_model_options(p: argparse.ArgumentParser, *, thresholds: bool = True) -> None:
    """``--models``, ``--face-encoder``, ``--provider`` (and ``--thresholds``, ``--margin``)."""
    add_config_option(p)
    p.add_argument(
        "--models",
        metavar="DIR",
        default=None,
        help="folder of exported models (default: <model store>/onnx, made by `make models`)",
    )
    p.add_argument(
        "--face-encoder",
        metavar="MANIFEST",
        default=None,
        help="face embedder manifest in --models, e.g. dlib_resnet.int8-qdq.json "
        "(default dlib_resnet.json, fp32)",
    )
    p.add_argument(
        "--provider",
        choices=PROVIDERS,
        default=None,
        help="ONNX Runtime execution provider (default auto; the one actually used is printed)",
    )
    p.add_argument(
        "--no-flip",
        action="store_true",
        default=None,
        help="describe faces without mirror averaging (faster embedding; its vectors "
        "are a separate index, so embed the memory's faces again)",
    )
    p.add_argument(
        "--tiles",
        type=int,
        default=None,
        metavar="N",
        help="also detect faces on an N x N grid of tiles (2 to 4) on every frame, to find "
        "small, far faces; costs N*N extra detector inputs per frame (default 1: tiles only "
        "where they pay: a photo or stream frame with no face, an independent photo over "
        "960 px, a stream whose small face was lost)",
    )
    if thresholds:
        p.add_argument(
            "--thresholds",
            metavar="FILE",
            default=None,
            help="calibrated thresholds (default: $RAP_EDGE_THRESHOLDS, else "
            "<memory>/thresholds.json, else <models>/thresholds.json — `make models` "
            "installs the calibrated one there — else each model's manifest value; never "
            "the working directory)",
        )
        p.add_argument(
            "--margin",
            type=float,
            default=None,
            help="best-vs-second cosine margin under which a match is 'uncertain' (default 0.02)",
        )


def add_object_options(p: argparse.ArgumentParser) -> None:
    """``--objects``, ``--object-encoder``, ``--object-detector``."""
    p.add_argument(
        "--objects",
        action="store_true",
        default=None,
        help="also recognise the memory's objects and pets (non-person categories) "
        "with the object embedder",
    )
    p.add_argument(
        "--object-encoder",
        metavar="MANIFEST",
        default=None,
        help="object embedder manifest in --models (default mobilenetv2.json)",
    )
    p.add_argument(
        "--object-detector",
        metavar="MANIFEST",
        default=None,
        help="YOLO-style detector manifest (task detect, decoder yolo); without one, "
        "multi-scale windows are searched (coarser and slower)",
    )


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """``--backend``, ``--llm``, ``--llm-provider``, ``--max-tokens``, ``--max-concepts``."""
    from rap_edge.generate import BACKENDS

    g = p.add_argument_group("generation")
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="who writes the words (default: $RAP_EDGE_BACKEND, else auto = "
        "ortgenai with SmolLM2-135M INT4 when `make models` has built it, else "
        "template)",
    )
    g.add_argument(
        "--llm",
        metavar="DIR",
        help="model folder: an ORT GenAI folder for ortgenai, a Hugging Face folder "
        "for transformers (default: the model store's SmolLM2)",
    )
    g.add_argument(
        "--llm-provider",
        choices=[p.value for p in LLM_PROVIDERS],
        default=None,
        help="where the LLM runs (default: auto)",
    )
    g.add_argument(
        "--llm-threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for the ortgenai decoder (default: every core; on a "
        "2-core device, 1 leaves a core to the camera loop)",
    )
    g.add_argument(
        "--vision-onnx",
        metavar="DIR",
        help="transformers backend with a LLaVA or Idefics3 model: run its image side "
        "from this `rap-edge export vision-tower` folder through ONNX Runtime "
        "(TensorRT, CUDA or CPU)",
    )
    g.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        metavar="N",
        help="longest answer in tokens (default: 96)",
    )
    g.add_argument(
        "--max-concepts",
        type=int,
        default=None,
        metavar="K",
        help="most concepts in a prompt; the lowest-scoring go first (default: 5)",
    )


def add_stream_options(p: argparse.ArgumentParser) -> None:
    """Timeouts and backoff of cameras, RTSP/HTTP streams and GStreamer pipelines."""
    g = p.add_argument_group(
        "streams (cameras, RTSP/HTTP, GStreamer)",
        "A dropped or stalled stream is reconnected with exponential backoff; the gap is "
        "logged and counted.",
    )
    g.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="a source that cannot be opened is retried for S seconds, then fails (default 10)",
    )
    g.add_argument(
        "--read-timeout",
        type=float,
        default=None,
        metavar="S",
        help="no frame for S seconds is a stall: the stream is reconnected (default 10)",
    )
    g.add_argument(
        "--backoff-max",
        type=float,
        default=30.0,
        metavar="S",
        help="longest wait between reconnection attempts (default 30)",
    )


def stream_policy(args: argparse.Namespace) -> ReconnectPolicy:
    """The :class:`~rap_edge.sources.ReconnectPolicy` the stream flags name.

    Raises:
        InvalidInputError: a flag that is not a positive number of seconds (named).
    """
    from rap_edge.sources import ReconnectPolicy

    values = {
        "connect_timeout": args.connect_timeout,
        "read_timeout": args.read_timeout,
        "backoff_max": args.backoff_max,
    }
    for field, value in values.items():
        if value is not None and not (0 < value < math.inf):
            flag = "--" + field.replace("_", "-")
            msg = f"{flag} must be a positive number of seconds, got {value:g}"
            raise InvalidInputError(msg)
    chosen = {k: v for k, v in values.items() if v is not None}
    chosen["backoff_initial"] = min(ReconnectPolicy().backoff_initial, args.backoff_max)
    return ReconnectPolicy(**chosen)


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:  # noqa: ANN401
    """Defaults, then ``--config``, then ``RAP_EDGE_*``, then the flags, then ``overrides``.

    Raises:
        InvalidInputError: a bad value from any of them, named by its setting.
    """
    from rap_edge.app import Settings

    config = getattr(args, "config", None)
    settings = Settings.from_yaml(config) if config else Settings()
    settings = Settings.from_env(base=settings)
    given: dict[str, object] = {}
    for name in _FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            given[name] = value
    for flag, name in _NEGATED.items():
        if getattr(args, flag, None):
            given[name] = False
    given.update(overrides)
    return settings.merged(given)


def open_session(
    args: argparse.Namespace,
    *,
    memory: str | Memory = "optional",
    isolate: bool = False,
    embed: bool = True,
    say: bool = True,
    **overrides: Any,  # noqa: ANN401 - Settings fields
) -> Session:
    """The session the options name; prints what was loaded and which thresholds decide."""
    import sys

    from rap_edge.app import Session

    session = Session.open(
        settings_from_args(args, **overrides),
        memory=memory,  # type: ignore[arg-type]
        isolate=isolate,
        embed=embed,
    )
    if say:
        for line in session.summary():
            print(line, file=sys.stderr)
    return session


def memory_path(args: argparse.Namespace) -> Path:
    """``--memory``, else ``$RAP_EDGE_MEMORY``, else the user data folder's memory."""
    from rap_edge.memory import default_memory_dir

    return (
        Path(args.memory).expanduser() if getattr(args, "memory", None) else default_memory_dir()
    )
