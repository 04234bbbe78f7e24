"""From memory hits to a decision: per-encoder thresholds (calibrated) and a margin rule.

A concept scores its best reference image (the memory's per-concept aggregation). The decision:

* no candidate at or above the encoder's threshold: ``unknown`` (never a forced nearest match);
* the best and second-best *concepts* within ``margin`` of each other: ``uncertain`` (also
  when the runner-up is just under the threshold: the pair is still too close to call);
* a low-quality face (small, blurred or dim; ``rap_edge.pipeline._quality``) whose best score
  is under the calibrated ``low_quality_threshold``: ``uncertain`` (abstain, not guess);
* otherwise ``known``: the best concept.

Thresholds come from a calibration file written by ``rap-edge calibrate thresholds``
(``{"encoders": {encoder_id: {"threshold": t, ...}}}``); an encoder the file does not cover
falls back to its manifest's recommended threshold, and :meth:`Thresholds.source` says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rap_edge.pipeline._types import Candidate, Decision

__all__ = [
    "DEFAULT_MARGIN",
    "REPO_THRESHOLDS",
    "THRESHOLDS_ENV",
    "Thresholds",
    "decide",
    "default_thresholds_path",
]

# Best-vs-second-best margin (cosine) under which two concepts are too close to call. dlib's
# descriptors put different people 0.1-0.2 apart and the same person within ~0.05.
DEFAULT_MARGIN = 0.02
THRESHOLDS_VERSION = 1
THRESHOLDS_ENV = "RAP_EDGE_THRESHOLDS"
REPO_THRESHOLDS = Path("calibration") / "thresholds.json"


def default_thresholds_path(models: str | Path | None = None) -> Path | None:
    """``$RAP_EDGE_THRESHOLDS``, else ``thresholds.json`` in the models folder if it exists.

    ``models`` defaults to ``<model store>/onnx``. The working directory is never consulted
    (``make models`` installs the repository's calibrated file beside the models), so a
    command decides the same wherever it runs. :func:`rap_edge.app.find_thresholds` also
    looks beside the memory.
    """
    import os

    env = os.environ.get(THRESHOLDS_ENV)
    if env:
        return Path(env)
    if models is None:
        from rap_edge.models import default_store_dir

        models = default_store_dir() / "onnx"
    path = Path(models) / "thresholds.json"
    return path if path.is_file() else None


@dataclass
class Thresholds:
    """Per-encoder similarity thresholds.

    Attributes:
        values: encoder id -> threshold (cosine).
        origin: encoder id -> where the value came from (file path or ``manifest``).
        margin: Best-vs-second margin for ``uncertain``.
        details: The calibration records as read (pair counts, target FAR, curve).
        low_quality: encoder id -> threshold for low-quality faces (see
            ``rap_edge.pipeline._quality``; at least the main threshold). A low-quality face
            whose best score lies between the two is ``uncertain``.
    """

    values: dict[str, float] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    margin: float = DEFAULT_MARGIN
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    low_quality: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, *, margin: float = DEFAULT_MARGIN) -> Thresholds:
        """Read a calibration file.

        Raises:
            ConfigError: if it is missing, not JSON, of another version, or a threshold is
                not a number in [-1, 1].
        """
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            msg = f"{p}: threshold file not found (make one: rap-edge calibrate thresholds)"
            raise ConfigError(msg) from err
        except (OSError, UnicodeDecodeError, ValueError) as err:
            msg = f"{p}: not a readable JSON threshold file ({err})"
            raise ConfigError(msg) from err
        if not isinstance(data, dict) or data.get("version") != THRESHOLDS_VERSION:
            msg = f"{p}: not a version-{THRESHOLDS_VERSION} threshold file"
            raise ConfigError(msg)
        out = cls(margin=_check_margin(margin))
        encoders = data.get("encoders")
        if not isinstance(encoders, dict):
            msg = f"{p}: field 'encoders' must be an object"
            raise ConfigError(msg)
        for enc, rec in encoders.items():
            value = rec.get("threshold") if isinstance(rec, dict) else None
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (-1.0 <= value <= 1.0)
            ):
                msg = f"{p}: encoder {enc!r}: threshold must be a number in [-1, 1]"
                raise ConfigError(msg)
            out.values[enc] = float(value)
            out.origin[enc] = str(p)
            out.details[enc] = rec
            low = rec.get("low_quality_threshold")
            if low is not None:
                if (
                    isinstance(low, bool)
                    or not isinstance(low, (int, float))
                    or not (-1.0 <= low <= 1.0)
                ):
                    msg = (
                        f"{p}: encoder {enc!r}: low_quality_threshold must be a number in [-1, 1]"
                    )
                    raise ConfigError(msg)
                out.low_quality[enc] = float(low)  # never below the main one: for_quality
        return out

    def set_default(self, encoder_id: str, value: float, origin: str = "manifest") -> None:
        """Use ``value`` for ``encoder_id`` unless the file already gives one."""
        if encoder_id not in self.values:
            self.values[encoder_id] = float(value)
            self.origin[encoder_id] = origin

    def get(self, encoder_id: str) -> float:
        """The threshold for an encoder.

        Raises:
            ConfigError: if none is known.
        """
        try:
            return self.values[encoder_id]
        except KeyError:
            msg = f"no threshold for encoder {encoder_id!r} (calibrate it, or load its manifest)"
            raise ConfigError(msg) from None

    def for_quality(self, encoder_id: str, quality: float | None) -> float:
        """The threshold a face of this quality must reach to be named (``known``).

        Full-quality faces (and faces of unknown quality) need the main threshold; low-quality
        ones the calibrated ``low_quality`` threshold where there is one.
        """
        main = self.get(encoder_id)
        if quality is None or quality >= 1.0:
            return main
        return max(main, self.low_quality.get(encoder_id, main))

    def source(self, encoder_id: str) -> str:
        """Where the encoder's threshold came from."""
        return self.origin.get(encoder_id, "none")


def _check_margin(margin: float) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        msg = f"margin must be a number in [0, 1), got {margin!r}"
        raise InvalidInputError(msg)
    return float(margin)


def decide(
    candidates: Sequence[Candidate],
    threshold: float,
    margin: float,
    *,
    name_at: float | None = None,
) -> tuple[Decision, Candidate | None]:
    """The decision for one observation's candidates (best first, one per concept).

    ``name_at`` (at least ``threshold``): the score a clear best candidate needs to be
    ``known``; between ``threshold`` and it the decision is ``uncertain`` (a low-quality face,
    see :meth:`Thresholds.for_quality`).
    """
    if not candidates or candidates[0].score < threshold:
        return "unknown", None
    best = candidates[0]
    if len(candidates) > 1 and best.score - candidates[1].score < margin:
        return "uncertain", best
    if name_at is not None and best.score < name_at:
        return "uncertain", best
    return "known", best
