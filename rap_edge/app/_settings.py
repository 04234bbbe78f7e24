"""One settings object for every front end, checked once, from flags, environment, ROS or YAML.

:class:`Settings` holds what the CLI, the demo, the ROS node, the web app and the benches used
to assemble each on their own: the model folder and encoders, the execution provider, the
thresholds, tracking and tiling, and the generation backend's options. It is built by layering
sources over the defaults (later layers win)::

    Settings.layered(Settings.from_yaml("rap-edge.yaml"), Settings.from_env(), cli_values)

and every source goes through :meth:`Settings.from_mapping`, so a bad value gets the same
message whether it came from ``--tiles 9``, ``RAP_EDGE_TILES=9``, a ROS parameter or a YAML
file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

from rap_edge.errors import InvalidInputError
from rap_edge.runtime import LLM_PROVIDERS, Provider

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ENV_PREFIX", "PROVIDERS", "RUNTIME_FIELDS", "Settings"]

PROVIDERS = tuple(p.value for p in Provider)
BACKEND_NAMES = ("auto", "ortgenai", "transformers", "template")  # rap_edge.generate.BACKENDS
ENV_PREFIX = "RAP_EDGE_"
# Environment names that already mean something else: RAP_EDGE_MODELS is the model *store*
# (whose ``onnx/`` folder is the default ``models``), RAP_EDGE_MEMORY and RAP_EDGE_BACKEND are
# read where their defaults are resolved. They are not read again here.
_ENV_SKIP = frozenset({"models"})

# What may change while frames flow (the rest shapes models, threads or backends).
RUNTIME_FIELDS = frozenset(
    {
        "top_k",
        "margin",
        "face_threshold",
        "object_threshold",
        "embed_every",
        "track",
        "tiles",
        "describe_every",
        "max_concepts",
    }
)

_INT_RANGES = {
    "top_k": (1, 100),
    "embed_every": (1, 10_000),
    "tiles": (1, 4),
    "max_concepts": (0, 50),
    "max_tokens": (1, 4096),
}
_PATH_FIELDS = ("memory", "models", "thresholds", "llm", "vision_onnx")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything a session needs to know, validated by :meth:`check`.

    Attributes:
        memory: Concept memory folder (None: ``$RAP_EDGE_MEMORY``, else the user data folder's
            ``memory``; front ends that can run without a memory use it only if it exists).
        models: Folder of exported models (None: ``<model store>/onnx``, made by
            ``make models``).
        face_encoder: Face embedder manifest in ``models``.
        object_encoder: Object embedder manifest in ``models``.
        object_detector: YOLO-style detector manifest (None: multi-scale windows).
        provider: ONNX Runtime execution provider: ``auto``, ``tensorrt``, ``cuda``, ``cpu``.
        flip: Mirror-average face descriptors (a separate index from unflipped vectors).
        thresholds: Calibrated threshold file (None: ``<memory>/thresholds.json``, else
            ``<models>/thresholds.json``, else each model's manifest value).
        margin: Best-vs-second cosine margin for ``uncertain``, in [0, 1) (None: the threshold
            file's, else 0.02).
        face_threshold: Cosine threshold for faces in [-1, 1], overriding the file's.
        object_threshold: The same for objects.
        top_k: Concepts retrieved per face or object, 1..100.
        track: Follow faces across frames (off: every frame stands alone).
        embed_every: Re-embed a tracked face at least every N frames, 1..10000.
        tiles: Also detect faces on a tiles x tiles grid (1: off; 2 or 3 find far faces).
        objects: Also recognise the memory's objects and pets.
        describe: Describe each source's scene in words when its recognised set changes.
        describe_every: With ``describe``, also describe every N seconds, 0..86400.
        max_concepts: Most concepts in a prompt, 0..50 (the lowest scores go first).
        backend: Generation backend: ``auto``, ``ortgenai``, ``transformers``, ``template``
            (None: ``$RAP_EDGE_BACKEND``, else ``auto``).
        llm: Model folder for the backend (None: the model store's default).
        llm_provider: Where the model runs: ``auto``, ``cpu`` or ``cuda``.
        llm_threads: CPU threads for the ``ortgenai`` decoder, 1..1024 (None: every core).
        vision_onnx: For ``transformers`` with a LLaVA or Idefics3 model, an exported vision
            tower folder.
        max_tokens: Longest answer in tokens, 1..4096.
    """

    memory: Path | None = None
    models: Path | None = None
    face_encoder: str = "dlib_resnet.json"
    object_encoder: str = "mobilenetv2.json"
    object_detector: str | None = None
    provider: str = "auto"
    flip: bool = True
    thresholds: Path | None = None
    margin: float | None = None
    face_threshold: float | None = None
    object_threshold: float | None = None
    top_k: int = 3
    track: bool = True
    embed_every: int = 10
    tiles: int = 1
    objects: bool = False
    describe: bool = False
    describe_every: float = 0.0
    max_concepts: int = 5
    backend: str | None = None
    llm: Path | None = None
    llm_provider: str = "auto"
    llm_threads: int | None = None
    vision_onnx: Path | None = None
    max_tokens: int = 96

    def __post_init__(self) -> None:
        """Accept text and path-like values for the path fields (blank text stays, refused)."""
        for name in _PATH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
                object.__setattr__(self, name, Path(value).expanduser())

    # -- sources -----------------------------------------------------------------------------

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, object], *, base: Settings | None = None
    ) -> Settings:
        """``base`` (default: the defaults) with ``values`` applied, checked.

        Values may be typed (YAML, ROS parameters, Python) or text (environment): text is
        converted by the field's type (``"true"``/``"false"``, numbers, paths; ``""`` or
        ``"none"`` unsets an optional field). Unknown names are refused.

        Raises:
            InvalidInputError: an unknown name or a bad value, naming the field.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            msg = f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            raise InvalidInputError(msg)
        hints = _hints()
        changes: dict[str, Any] = {
            name: _coerce(name, hints[name], value) for name, value in values.items()
        }
        out = replace(base or cls(), **changes)
        out.check()
        return out

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, base: Settings | None = None
    ) -> Settings:
        """``RAP_EDGE_<FIELD>`` variables (e.g. ``RAP_EDGE_TILES=2``) over ``base``.

        ``RAP_EDGE_MODELS`` (the model store), ``RAP_EDGE_MEMORY`` and ``RAP_EDGE_BACKEND`` keep
        their meaning and are resolved where their defaults are.
        """
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if f.name not in _ENV_SKIP and f.name not in {"memory", "backend"} and key in env:
                values[f.name] = env[key]
        return cls.from_mapping(values, base=base)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], *, base: Settings | None = None) -> Settings:
        """A YAML file of ``name: value`` pairs (the field names) over ``base``.

        Raises:
            InvalidInputError: unreadable, not YAML, not a mapping, or a bad value.
        """
        import yaml

        from rap_edge.sources._files import read_user_file

        p = Path(path).expanduser()
        # A regular file of at most 1 MB: a FIFO or /dev/zero is refused, never read forever.
        raw = read_user_file(p, max_bytes=1_000_000, what="settings file")
        try:
            data = yaml.safe_load(raw.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as err:
            msg = f"{p}: cannot read the settings ({err})"
            raise InvalidInputError(msg) from err
        if data is None:
            data = {}
        if not isinstance(data, dict):
            msg = f"{p}: settings must be a mapping of name: value, got {type(data).__name__}"
            raise InvalidInputError(msg)
        return cls.from_mapping(data, base=base)

    def merged(self, values: Mapping[str, object]) -> Settings:
        """These settings with ``values`` applied (None values are skipped), checked."""
        return type(self).from_mapping(
            {k: v for k, v in values.items() if v is not None}, base=self
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as text)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    # -- validation --------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse absurd values with a message naming the field.

        Raises:
            InvalidInputError: on a value of the wrong type or out of range.
        """
        for name, (lo, hi) in _INT_RANGES.items():
            value = getattr(self, name)
            if not _is_int(value) or not lo <= value <= hi:
                msg = f"{name} must be an integer in {lo}..{hi}, got {value!r}"
                raise InvalidInputError(msg)
        for name in ("flip", "track", "objects", "describe"):
            if not isinstance(getattr(self, name), bool):
                msg = f"{name} must be true or false, got {getattr(self, name)!r}"
                raise InvalidInputError(msg)
        for name in ("face_threshold", "object_threshold"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and -1.0 <= value <= 1.0):
                msg = f"{name} must be a cosine similarity in [-1, 1] (or unset), got {value!r}"
                raise InvalidInputError(msg)
        if self.margin is not None and not (_is_number(self.margin) and 0 <= self.margin < 1):
            msg = f"margin must be a number in [0, 1) (or unset), got {self.margin!r}"
            raise InvalidInputError(msg)
        if not (_is_number(self.describe_every) and 0 <= self.describe_every <= 86_400):  # noqa: PLR2004
            msg = f"describe_every must be 0..86400 seconds, got {self.describe_every!r}"
            raise InvalidInputError(msg)
        if self.provider not in PROVIDERS:
            msg = f"provider must be one of {', '.join(PROVIDERS)}, got {self.provider!r}"
            raise InvalidInputError(msg)
        if self.llm_provider not in LLM_PROVIDERS:
            msg = (
                f"llm_provider must be one of {', '.join(p.value for p in LLM_PROVIDERS)}, "
                f"got {self.llm_provider!r}"
            )
            raise InvalidInputError(msg)
        if self.backend is not None and self.backend not in BACKEND_NAMES:
            msg = f"backend must be one of {', '.join(BACKEND_NAMES)}, got {self.backend!r}"
            raise InvalidInputError(msg)
        if self.llm_threads is not None and not (
            _is_int(self.llm_threads) and 1 <= self.llm_threads <= 1024  # noqa: PLR2004
        ):
            msg = f"llm_threads must be an integer in 1..1024 (or unset), got {self.llm_threads!r}"
            raise InvalidInputError(msg)
        for name in ("face_encoder", "object_encoder", "object_detector"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                msg = f"{name} must be a manifest file name, got {value!r}"
                raise InvalidInputError(msg)
        for name in _PATH_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Path) or not str(value).strip()):
                msg = f"{name} must be a path, got {value!r}"
                raise InvalidInputError(msg)


_HINTS: dict[str, str] = {}


def _hints() -> dict[str, str]:
    """Field name -> the annotation's text (``int``, ``float | None``, ``Path | None``...)."""
    if not _HINTS:
        resolved = get_type_hints(Settings, globalns={"Path": Path})
        for name, hint in resolved.items():
            _HINTS[name] = str(hint).replace("pathlib.", "").replace("<class '", "")
            _HINTS[name] = _HINTS[name].replace("'>", "")
    return _HINTS


def _coerce(name: str, hint: str, value: object) -> object:
    """Convert text (environment, YAML strings) to the field's type; other values pass."""
    optional = "None" in hint
    if isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in {"", "none", "null"}:
            return None
        if hint.startswith("bool"):
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            msg = f"{name} must be true or false, got {value!r}"
            raise InvalidInputError(msg)
        if hint.startswith("int"):
            try:
                return int(text)
            except ValueError:
                msg = f"{name} must be an integer, got {value!r}"
                raise InvalidInputError(msg) from None
        if hint.startswith("float"):
            try:
                return float(text)
            except ValueError:
                msg = f"{name} must be a number, got {value!r}"
                raise InvalidInputError(msg) from None
        if hint.startswith("Path"):
            return Path(text).expanduser() if text else value
        return text
    if hint.startswith("Path") and isinstance(value, os.PathLike):
        return Path(value).expanduser()
    if hint.startswith("float") and _is_int(value):
        return float(value)  # type: ignore[arg-type]
    return value
