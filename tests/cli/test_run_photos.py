"""``rap-edge run`` on image folders: independent photos by default, sequences by name or flag.

The network test uses the real check photos and models: each photo's face is cut out and pasted
at the same place of a 640x480 frame, so consecutive photos of different people overlap
exactly where a tracker would carry one photo's decision into the next (what ``run`` did
before: a folder was one video).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.cli import main
from rap_edge.sources import ImageFilesSource, looks_like_sequence, open_source

if TYPE_CHECKING:
    from tests.conftest import Exported


@pytest.mark.parametrize(
    ("names", "sequence"),
    [
        (["frame_000001.png", "frame_000002.png", "frame_000010.png"], True),
        (["0001.jpg", "0002.jpg"], True),
        (["cam0-0042.jpg", "cam0-0043.png"], True),
        (["frame_0001.png"], False),  # one file is a photo
        (["ana_00.jpg", "ana_01.jpg"], False),  # two digits: numbered photos
        (["frame_0001.png", "frame_00002.png"], False),  # widths differ
        (["a_0001.png", "b_0002.png"], False),  # prefixes differ
        (["frame_0001.png", "frame_0001.jpg"], False),  # one number twice
        (["IMG_1234.jpg", "holiday.jpg"], False),
    ],
)
def test_sequence_naming_pattern(names: list[str], sequence: bool) -> None:
    assert looks_like_sequence([Path(n) for n in names]) is sequence


def _write(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for n in names:
        cv2.imwrite(str(folder / n), np.full((8, 8, 3), 100, np.uint8))


def test_folders_are_photos_unless_named_or_flagged_as_a_sequence(tmp_path: Path) -> None:
    _write(tmp_path / "photos", ["ana.jpg", "bo.jpg", "ana_01.jpg"])
    _write(tmp_path / "frames", ["frame_0001.png", "frame_0002.png"])
    with open_source(str(tmp_path / "photos")) as src:
        assert src.independent and "independent photos" in src.describe()
    with open_source(str(tmp_path / "photos"), sequence=True) as src:
        assert not src.independent and "one sequence" in src.describe()
    with open_source(str(tmp_path / "frames")) as src:
        assert not src.independent
    with open_source(str(tmp_path / "frames"), sequence=False) as src:
        assert src.independent
    with open_source(str(tmp_path / "photos" / "ana.jpg"), sequence=True) as src:
        assert src.independent  # a single image is always a photo
    single = ImageFilesSource([tmp_path / "frames" / "frame_0001.png"], kind="folder", name="x")
    assert single.independent


def _face_frame(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The face (with a margin of one box) scaled to 240x240 at (200, 120) of a 640x480 frame."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(w, h) * 2
    pad = int(side)
    big = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    x0, y0 = int(cx - side / 2) + pad, int(cy - side / 2) + pad
    crop = big[y0 : y0 + int(side), x0 : x0 + int(side)]
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[120:360, 200:440] = cv2.resize(crop, (240, 240), interpolation=cv2.INTER_AREA)
    return canvas


@pytest.mark.network
def test_a_folder_of_different_peoples_photos_carries_no_decision(
    face_models: Exported, tmp_path: Path
) -> None:
    from rap_edge.pipeline import FaceModels
    from rap_edge.pipeline._faces import largest

    models = FaceModels.load(face_models.out, provider="cpu")
    photos = {p.stem: cv2.imread(str(p)) for p in face_models.photos}
    frames = {}
    for stem in ("obama2", "biden", "obama3", "biden"):
        face = largest(models.detect(photos[stem]))
        assert face is not None
        frames[stem] = _face_frame(photos[stem], face.box)
    folder = tmp_path / "photos"
    folder.mkdir()
    order = ["obama2", "biden", "obama3", "biden", "obama2", "biden"]
    for i, stem in enumerate(order):
        cv2.imwrite(str(folder / f"{i}_{stem}.png"), frames[stem])
    mem = tmp_path / "mem"
    common = ["--models", str(face_models.out), "--provider", "cpu", "--memory", str(mem)]
    obama = next(p for p in face_models.photos if p.name == "obama.jpg")
    assert main(["memory", "init", str(mem)]) == 0
    add = ["memory", "add", "Barack", "--image", str(obama), "--category", "person"]
    assert main([*add, *common[-2:]]) == 0
    assert main(["memory", "embed-faces", *common]) == 0
    jsonl = tmp_path / "out.jsonl"
    assert main(["run", "--source", str(folder), "--jsonl", str(jsonl), *common]) == 0
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [Path(ln["source"]).stem.split("_")[1] for ln in lines] == order
    tracks = set()
    for ln, stem in zip(lines, order, strict=True):
        (rec,) = ln["recognitions"]
        assert rec["embedded"], "each photo is embedded afresh"
        tracks.add(rec["track"])
        if stem == "biden":
            assert (rec["decision"], rec["name"]) == ("unknown", None)
        else:
            assert (rec["decision"], rec["name"]) == ("known", "Barack")
    assert len(tracks) == len(order), "no track continues from one photo into the next"
