"""Per-camera settings (rap_edge.app._cameras): validation, the filter, the rate limit."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from rap_edge.app._cameras import (
    CameraSettings,
    RateLimit,
    filter_recognitions,
    load_camera_settings,
    parse_camera_settings,
    point_in_polygon,
)
from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path

CAM = "/cam_a/image_raw"
LEFT_HALF = [[0, 0], [320, 0], [320, 480], [0, 480]]


@dataclass(frozen=True)
class Rec:
    kind: str
    box: tuple[float, float, float, float]


def test_a_file_is_read_and_checked(tmp_path: Path) -> None:
    f = tmp_path / "cameras.yaml"
    f.write_text(
        f"cameras:\n  {CAM}:\n    min_face_size: 40\n    max_rate: 5\n"
        f"    ignore_zones:\n      - {LEFT_HALF}\n    objects: false\n  /cam_b: {{}}\n"
    )
    got = load_camera_settings(f)
    assert got[CAM] == CameraSettings(
        min_face_size=40,
        max_rate=5.0,
        ignore_zones=(((0.0, 0.0), (320.0, 0.0), (320.0, 480.0), (0.0, 480.0)),),
        objects=False,
    )
    assert got["/cam_b"] == CameraSettings()
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_camera_settings(empty) == {}


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"min_face_size": -1}, r"camera '/cam_a/image_raw': min_face_size must be a whole"),
        ({"min_face_size": 12.5}, "min_face_size must be a whole number"),
        ({"min_face_size": True}, "min_face_size must be a whole number"),
        ({"max_rate": -2}, "max_rate must be 0 .every frame. to 1000 frames/s, got -2"),
        ({"max_rate": float("nan")}, "max_rate must be 0"),
        ({"max_rate": "fast"}, "max_rate must be 0"),
        ({"objects": "no"}, "objects must be true or false, got 'no'"),
        ({"ignore_zones": [[[0, 0], [1, 1]]]}, r"ignore_zones\[0\] must be a polygon of 3"),
        ({"ignore_zones": [[[0, 0], [1, 1], [2, "x"]]]}, r"ignore_zones\[0\]\[2\] must be an"),
        ({"ignore_zones": [[[0, 0], [1, 1], [2, 2]]]}, r"ignore_zones\[0\] encloses no area"),
        ({"ignore_zones": "left"}, "ignore_zones must be a list of at most 64 polygons"),
        ({"describe_every": -5}, "describe_every must be 0 .only on changes. to 86400 seconds"),
        ({"describe_every": "often"}, "describe_every must be 0 .only on changes."),
        ({"min_face": 3}, r"unknown setting 'min_face' \(known: describe_every, ignore_zones"),
    ],
)
def test_invalid_values_are_refused_naming_camera_and_field(
    values: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        parse_camera_settings({"cameras": {CAM: values}}, source="x.yaml")
    with pytest.raises(InvalidInputError, match=r"^x\.yaml: camera '/cam_a/image_raw': "):
        parse_camera_settings({"cameras": {CAM: values}}, source="x.yaml")


def test_bad_files_and_shapes(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="camera settings file not found"):
        load_camera_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [unclosed\n")
    with pytest.raises(InvalidInputError, match="cannot read the camera settings"):
        load_camera_settings(bad)
    with pytest.raises(InvalidInputError, match="expected a mapping with one key, 'cameras'"):
        parse_camera_settings({CAM: {}})
    with pytest.raises(InvalidInputError, match="'cameras' must map camera names"):
        parse_camera_settings({"cameras": [CAM]})
    with pytest.raises(InvalidInputError, match="settings must be a mapping, got list"):
        parse_camera_settings({"cameras": {CAM: [1]}})


def test_defaults_and_a_base() -> None:
    base = CameraSettings(min_face_size=30, objects=False)
    got = CameraSettings.from_mapping(CAM, {"max_rate": 2}, base=base)
    assert got == CameraSettings(min_face_size=30, max_rate=2.0, objects=False)
    assert got.describe_every is None  # the front end's period
    porch = CameraSettings.from_mapping(CAM, {"describe_every": 30}, base=base)
    assert porch.describe_every == 30.0
    assert CameraSettings.from_mapping(CAM, {"describe_every": None}).describe_every is None


def test_point_in_polygon() -> None:
    square = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))
    assert point_in_polygon(5, 5, square)
    assert point_in_polygon(10, 5, square)  # on an edge
    assert not point_in_polygon(11, 5, square)
    concave = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (5.0, 2.0), (0.0, 10.0))
    assert not point_in_polygon(5, 8, concave)  # in the notch
    assert point_in_polygon(2, 2, concave)


def test_filter_drops_zones_small_faces_and_objects() -> None:
    settings = CameraSettings(
        min_face_size=40,
        ignore_zones=(((0.0, 0.0), (320.0, 0.0), (320.0, 480.0), (0.0, 480.0)),),
        objects=False,
    )
    in_zone = Rec("face", (100, 100, 200, 200))  # centre (150, 150): in the left half
    straddling = Rec("face", (280, 100, 400, 200))  # centre (340, 150): outside
    small = Rec("face", (400, 100, 430, 200))  # 30 px wide
    obj = Rec("object", (400, 300, 600, 450))
    assert filter_recognitions(settings, [in_zone, straddling, small, obj]) == [straddling]
    assert filter_recognitions(CameraSettings(), [in_zone, small, obj]) == [in_zone, small, obj]


def test_rate_limit() -> None:
    limit = RateLimit(5.0)  # one frame per 0.2 s
    arrivals = [i / 30 for i in range(90)]  # 30 Hz for 3 s
    allowed = [t for t in arrivals if limit.allow(t)]
    assert len(allowed) == 15
    # slots are 0.2 s apart; a frame lands on the first arrival at or after its slot
    assert all(b - a > 0.2 - 1 / 30 for a, b in itertools.pairwise(allowed))
    assert limit.skipped == 75
    assert all(RateLimit(0).allow(t) for t in arrivals)
