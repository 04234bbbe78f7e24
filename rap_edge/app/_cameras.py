"""Per-camera settings: what each camera recognises, and how often (no ROS; any front end).

A YAML file maps camera names (a ROS topic, a stream's name) to their settings; every field is
optional::

    cameras:
      /cam_a/image_raw:
        min_face_size: 40        # pixels; faces whose box is narrower or lower are dropped
        max_rate: 5              # frames per second processed at most (0: every frame)
        ignore_zones:            # polygons (x, y in pixels, 3+ points) where nothing is
          - [[0, 0], [320, 0], [320, 480], [0, 480]]   # recognised: a recognition whose box
        objects: false           # centre lies in one is dropped; objects/pets on or off
        describe_every: 30       # seconds between descriptions of an unchanged scene
                                 # (0: only on changes; omitted: the front end's setting)

:func:`load_camera_settings` reads and checks such a file, :meth:`CameraSettings.from_mapping`
checks one camera's fields; every error names the camera and the field. :func:`filter_recognitions`
and :class:`RateLimit` apply them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "CameraSettings",
    "RateLimit",
    "filter_recognitions",
    "load_camera_settings",
    "parse_camera_settings",
    "point_in_polygon",
]

MAX_FILE_BYTES = 1_000_000
MAX_ZONES = 64
MAX_ZONE_POINTS = 256
MAX_RATE_HZ = 1000.0
MAX_FACE_PX = 10_000
MAX_DESCRIBE_EVERY_S = 86_400.0

Point = tuple[float, float]
Polygon = tuple[Point, ...]


class _Boxed(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def box(self) -> Sequence[float]: ...


R = TypeVar("R", bound=_Boxed)


def _number(value: object) -> float | None:
    """The value as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class CameraSettings:
    """One camera's settings (the defaults change nothing).

    Attributes:
        min_face_size: Faces whose box is narrower or lower than this many pixels are dropped
            (0: none).
        max_rate: At most this many frames per second are processed; the others are skipped
            before any work (0: every frame).
        ignore_zones: Polygons of (x, y) pixel points: a recognition whose box centre lies
            inside one is dropped.
        objects: False drops the camera's object and pet recognitions.
        describe_every: With descriptions on, this camera is also described every so many
            seconds while what it sees is unchanged (0: only on changes; None: the front
            end's ``describe_every``).
    """

    min_face_size: int = 0
    max_rate: float = 0.0
    ignore_zones: tuple[Polygon, ...] = ()
    objects: bool = True
    describe_every: float | None = None

    @classmethod
    def from_mapping(
        cls, camera: str, values: Mapping[str, Any], *, base: CameraSettings | None = None
    ) -> CameraSettings:
        """Check ``values`` (field name -> value) over ``base`` (default: the defaults).

        Raises:
            InvalidInputError: an unknown field or a bad value, naming the camera and field.
        """
        if not isinstance(values, dict):
            msg = f"camera {camera!r}: settings must be a mapping, got {type(values).__name__}"
            raise InvalidInputError(msg)
        known = {f.name for f in fields(cls)}
        out = {f.name: getattr(base or cls(), f.name) for f in fields(cls)}
        for name, value in values.items():
            if name not in known:
                msg = (
                    f"camera {camera!r}: unknown setting {name!r} "
                    f"(known: {', '.join(sorted(known))})"
                )
                raise InvalidInputError(msg)
            out[name] = _check(camera, str(name), value)
        return cls(**out)


def _check(camera: str, name: str, value: object) -> object:
    where = f"camera {camera!r}: {name}"
    if name == "min_face_size":
        px = _number(value)
        if px is None or not 0 <= px <= MAX_FACE_PX or px != int(px):
            msg = f"{where} must be a whole number of pixels 0..{MAX_FACE_PX}, got {value!r}"
            raise InvalidInputError(msg)
        return int(px)
    if name == "max_rate":
        hz = _number(value)
        if hz is None or not 0 <= hz <= MAX_RATE_HZ:
            msg = f"{where} must be 0 (every frame) to {MAX_RATE_HZ:g} frames/s, got {value!r}"
            raise InvalidInputError(msg)
        return hz
    if name == "describe_every":
        seconds = _number(value)
        if value is not None and (seconds is None or not 0 <= seconds <= MAX_DESCRIBE_EVERY_S):
            msg = (
                f"{where} must be 0 (only on changes) to {MAX_DESCRIBE_EVERY_S:g} seconds, "
                f"got {value!r}"
            )
            raise InvalidInputError(msg)
        return seconds
    if name == "objects":
        if not isinstance(value, bool):
            msg = f"{where} must be true or false, got {value!r}"
            raise InvalidInputError(msg)
        return value
    # ignore_zones
    if not isinstance(value, (list, tuple)) or len(value) > MAX_ZONES:
        msg = f"{where} must be a list of at most {MAX_ZONES} polygons, got {value!r}"
        raise InvalidInputError(msg)
    zones = []
    for i, zone in enumerate(value):
        if not isinstance(zone, (list, tuple)) or not 3 <= len(zone) <= MAX_ZONE_POINTS:  # noqa: PLR2004
            msg = (
                f"{where}[{i}] must be a polygon of 3 to {MAX_ZONE_POINTS} [x, y] points, "
                f"got {zone!r}"
            )
            raise InvalidInputError(msg)
        points = []
        for j, point in enumerate(zone):
            if not (
                isinstance(point, (list, tuple))
                and len(point) == 2  # noqa: PLR2004
                and all(_number(v) is not None for v in point)
            ):
                msg = f"{where}[{i}][{j}] must be an [x, y] pair of pixel numbers, got {point!r}"
                raise InvalidInputError(msg)
            points.append((float(point[0]), float(point[1])))
        if _area(points) == 0:
            msg = f"{where}[{i}] encloses no area: {zone!r}"
            raise InvalidInputError(msg)
        zones.append(tuple(points))
    return tuple(zones)


def _area(points: Sequence[Point]) -> float:
    """The polygon's area (shoelace; absolute)."""
    n = len(points)
    twice = sum(
        points[k][0] * points[(k + 1) % n][1] - points[(k + 1) % n][0] * points[k][1]
        for k in range(n)
    )
    return abs(twice) / 2


def point_in_polygon(x: float, y: float, polygon: Sequence[Point]) -> bool:
    """Whether (x, y) lies inside ``polygon`` (even-odd ray casting; edges count as inside)."""
    inside = False
    n = len(polygon)
    for k in range(n):
        (x1, y1), (x2, y2) = polygon[k], polygon[(k + 1) % n]
        # on an edge: inside
        cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
        if cross == 0 and min(x1, x2) <= x <= max(x1, x2) and min(y1, y2) <= y <= max(y1, y2):
            return True
        if (y1 > y) != (y2 > y):
            at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < at:
                inside = not inside
    return inside


def parse_camera_settings(
    data: object, *, source: str = "camera settings", base: CameraSettings | None = None
) -> dict[str, CameraSettings]:
    """Check a parsed ``{"cameras": {name: {field: value}}}`` document.

    A field a camera omits is ``base``'s (default: the defaults).

    Raises:
        InvalidInputError: the document's shape, an unknown field or a bad value (the message
            names ``source``, the camera and the field).
    """
    if data is None:
        return {}
    if not isinstance(data, dict) or set(data) - {"cameras"}:
        msg = f"{source}: expected a mapping with one key, 'cameras', got {_shape(data)}"
        raise InvalidInputError(msg)
    cameras = data.get("cameras") or {}
    if not isinstance(cameras, dict):
        msg = f"{source}: 'cameras' must map camera names to settings, got {_shape(cameras)}"
        raise InvalidInputError(msg)
    out = {}
    for name, values in cameras.items():
        if not isinstance(name, str) or not name.strip():
            msg = f"{source}: camera names must be non-empty strings, got {name!r}"
            raise InvalidInputError(msg)
        try:
            out[name] = CameraSettings.from_mapping(name, values or {}, base=base)
        except InvalidInputError as err:
            msg = f"{source}: {err}"
            raise InvalidInputError(msg) from err
    return out


def _shape(value: object) -> str:
    if isinstance(value, dict):
        return f"a mapping with keys {sorted(map(str, value))}"
    return type(value).__name__


def load_camera_settings(
    path: str | os.PathLike[str], *, base: CameraSettings | None = None
) -> dict[str, CameraSettings]:
    """Read and check a camera settings YAML file (see the module's documentation).

    A field a camera omits is ``base``'s (default: the defaults).

    Raises:
        InvalidInputError: unreadable, not YAML, or any bad value (named with the camera and
            field).
    """
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        msg = f"{p}: camera settings file not found (or not a regular file)"
        raise InvalidInputError(msg)
    if p.stat().st_size > MAX_FILE_BYTES:
        msg = f"{p}: a camera settings file of over 1 MB is not a settings file"
        raise InvalidInputError(msg)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        msg = f"{p}: cannot read the camera settings ({err})"
        raise InvalidInputError(msg) from err
    return parse_camera_settings(data, source=str(p), base=base)


def filter_recognitions(settings: CameraSettings, recognitions: Iterable[R]) -> list[R]:
    """The recognitions ``settings`` keep, in order.

    Dropped: a face whose box is narrower or lower than ``min_face_size``, an object or pet
    where ``objects`` is off, and anything whose box centre lies in an ignore zone. A box is
    ``(x1, y1, x2, y2)`` in pixels; kinds are ``face`` and ``object``.
    """
    out = []
    for r in recognitions:
        x1, y1, x2, y2 = (float(v) for v in r.box)
        if r.kind == "face" and min(x2 - x1, y2 - y1) < settings.min_face_size:
            continue
        if r.kind != "face" and not settings.objects:
            continue
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        if any(point_in_polygon(cx, cy, zone) for zone in settings.ignore_zones):
            continue
        out.append(r)
    return out


class RateLimit:
    """Lets a frame through at most ``max_rate`` times a second (0: always)."""

    def __init__(self, max_rate: float) -> None:
        """``max_rate`` frames per second (checked by :class:`CameraSettings`)."""
        self.interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self._next: float | None = None
        self.skipped = 0

    def allow(self, now: float) -> bool:
        """Whether a frame arriving at ``now`` (monotonic seconds) is processed."""
        if self._next is not None and now < self._next:
            self.skipped += 1
            return False
        # The next slot follows the previous one (a steady rate), but never lags behind now.
        base = now if self._next is None else max(self._next, now - self.interval)
        self._next = base + self.interval
        return True
