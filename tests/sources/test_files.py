"""Image folders, single images, video files and source detection (all synthesized here)."""

from __future__ import annotations

import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from rap_edge.errors import InvalidInputError
from rap_edge.sources import (
    MAX_ERRORS,
    Frame,
    ImageFilesSource,
    detect_source,
    list_images,
    open_source,
)

RNG = np.random.default_rng(11)


def blocks(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    """A BGR image of flat 8x8 blocks (survives JPEG nearly unchanged)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)


def write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """png, jpg, 16-bit png, RGBA png, grey png, a corrupt jpg and an empty png, plus noise."""
    d = tmp_path / "frames"
    d.mkdir()
    expect: dict[str, np.ndarray] = {}
    img = blocks(1)
    write(d / "img1.png", img)
    expect["img1.png"] = img
    img = blocks(2)
    write(d / "img2.JPG", img)
    expect["img2.JPG"] = img
    wide = blocks(3).astype(np.uint16) * 257
    write(d / "img3.png", wide)
    expect["img3.png"] = blocks(3)
    bgra = np.concatenate([blocks(4), np.full((24, 32, 1), 7, np.uint8)], axis=2)
    write(d / "img4.png", bgra)
    expect["img4.png"] = blocks(4)
    grey = blocks(5)[:, :, 0]
    write(d / "img5.png", grey)
    expect["img5.png"] = np.repeat(grey[:, :, None], 3, axis=2)
    (d / "img6.jpg").write_bytes(
        b"\xff\xd8\xff\xe0" + bytes(RNG.integers(0, 256, 300, dtype=np.uint8))
    )
    (d / "img7.png").write_bytes(b"")
    write(d / "img10.png", blocks(10))
    expect["img10.png"] = blocks(10)
    # ignored: other files, hidden files, subfolders
    (d / "notes.txt").write_text("not an image")
    (d / "._img1.png").write_bytes(b"AppleDouble junk")
    (d / "sub").mkdir()
    write(d / "sub" / "img0.png", blocks(0))
    return d, expect


def test_folder_yields_in_natural_order_and_skips_bad_files(folder) -> None:
    d, expect = folder
    assert [p.name for p in list_images(d)] == [
        "img1.png",
        "img2.JPG",
        "img3.png",
        "img4.png",
        "img5.png",
        "img6.jpg",
        "img7.png",
        "img10.png",
    ]
    with open_source(str(d)) as src:
        assert src.kind == "folder"
        assert src.total == 8
        assert "8 images" in src.describe()
        frames = list(src)
        assert src.skipped == 2
        assert len(src.errors) == 2
        assert src.errors[0].startswith("frame 5 (img6.jpg): cannot decode")
        assert src.errors[1].startswith("frame 6 (img7.png): empty file")
        assert "2 frame(s) skipped" in src.describe()
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 7]
    assert [Path(f.source).name for f in frames] == [
        "img1.png",
        "img2.JPG",
        "img3.png",
        "img4.png",
        "img5.png",
        "img10.png",
    ]
    for f in frames:
        assert isinstance(f, Frame)
        assert f.timestamp is None
        assert f.source == str(d / Path(f.source).name)
        assert f.image.dtype == np.uint8
        assert f.image.shape == (24, 32, 3)
        assert f.image.flags.c_contiguous
        want = expect[Path(f.source).name]
        diff = np.abs(f.image.astype(int) - want)
        if f.source.endswith("JPG"):  # lossy and chroma subsampled: as OpenCV decodes it
            np.testing.assert_array_equal(f.image, cv2.imread(f.source, cv2.IMREAD_COLOR))
            assert diff.mean() < 20, f.source
        else:
            assert diff.max() == 0, f.source
    by_name = {Path(f.source).name: f for f in frames}
    assert by_name["img3.png"].orig_dtype == "uint16"
    assert by_name["img4.png"].orig_shape == (24, 32, 4)
    assert by_name["img5.png"].orig_shape == (24, 32)


def test_folder_loop_repeats_and_has_no_total(folder) -> None:
    d, _ = folder
    with open_source(str(d), loop=True) as src:
        assert src.total is None
        frames = []
        for f in src:
            frames.append(f)
            if len(frames) == 14:
                break
    assert [f.index for f in frames][-8:] == [8, 9, 10, 11, 12, 15, 16, 17]
    assert Path(frames[6].source).name == "img1.png"


def test_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="no image files"):
        open_source(str(tmp_path))


def test_loop_over_only_bad_files_ends(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"nope")
    with open_source(str(tmp_path), loop=True) as src:
        assert list(src) == []
        assert src.skipped == 1


def test_errors_are_bounded(tmp_path: Path) -> None:
    paths = []
    for i in range(MAX_ERRORS + 20):
        p = tmp_path / f"bad{i}.png"
        p.write_bytes(b"x")
        paths.append(p)
    src = ImageFilesSource(paths, kind="folder", name=str(tmp_path))
    assert list(src) == []
    assert src.skipped == MAX_ERRORS + 20
    assert len(src.errors) == MAX_ERRORS
    assert src.errors[-1].startswith(f"frame {MAX_ERRORS + 19} (bad{MAX_ERRORS + 19}.png)")


def test_single_image(tmp_path: Path) -> None:
    p = write(tmp_path / "one.PNG", blocks(9))
    with open_source(str(p)) as src:
        assert src.kind == "image"
        assert src.total == 1
        (frame,) = list(src)
    np.testing.assert_array_equal(frame.image, blocks(9))
    assert frame.source == str(p)
    assert frame.index == 0


def test_single_corrupt_image_is_skipped_not_raised(tmp_path: Path) -> None:
    p = tmp_path / "broken.webp"
    p.write_bytes(b"RIFF0000WEBPjunk")
    with open_source(str(p)) as src:
        assert list(src) == []
        assert src.skipped == 1
        assert "broken.webp" in src.errors[0]


def test_closed_source_refuses_iteration(tmp_path: Path) -> None:
    p = write(tmp_path / "one.png", blocks(9))
    src = open_source(str(p))
    src.close()
    src.close()
    with pytest.raises(InvalidInputError, match="closed"):
        list(src)


@pytest.fixture
def video(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    assert writer.isOpened()
    images = [blocks(20 + i) for i in range(7)]
    for img in images:
        writer.write(img)
    writer.release()
    return path, images


def test_video_read_back(video) -> None:
    path, images = video
    with open_source(str(path)) as src:
        assert src.kind == "video"
        assert src.total == 7
        assert "32x24" in src.describe()
        assert "7 frames" in src.describe()
        frames = list(src)
        assert src.skipped == 0
        assert src.errors == []
    assert [f.index for f in frames] == list(range(7))
    assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in range(7)])
    for f, img in zip(frames, images, strict=True):
        assert f.source == str(path)
        assert f.image.shape == (24, 32, 3)
        assert np.abs(f.image.astype(int) - img).mean() < 4


def test_video_iterates_again_and_loops(video) -> None:
    path, _ = video
    with open_source(str(path)) as src:
        assert len(list(src)) == 7
        assert len(list(src)) == 7
    with open_source(str(path), loop=True) as src:
        assert src.total is None
        frames = []
        for f in src:
            frames.append(f)
            if len(frames) == 16:
                break
    assert [f.index for f in frames] == list(range(16))
    stamps = [f.timestamp for f in frames]
    assert stamps == pytest.approx([i / 10 for i in range(16)])


def test_file_that_is_not_a_video(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello, not a video\n" * 10)
    with pytest.raises(InvalidInputError, match="cannot open this file as a video"):
        open_source(str(p))


def test_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "clip.mp4"
    with pytest.raises(InvalidInputError, match=r"nope/clip\.mp4: no such file"):
        open_source(str(missing))
    with pytest.raises(InvalidInputError, match="empty"):
        open_source("  ")


def test_detection(tmp_path: Path, video, folder) -> None:
    clip, _ = video
    frames, _ = folder
    assert detect_source("0").kind == "camera"
    assert detect_source("0").target == 0
    assert detect_source(" 12 ").target == 12
    spec = detect_source("rtsp://user:secret@10.0.0.9:554/stream")
    assert (spec.kind, spec.api) == ("camera", "stream")
    for url in ("http://cam.local/mjpg", "https://x/y.m3u8", "udp://@:5000", "tcp://1.2.3.4:9"):
        assert detect_source(url).kind == "camera"
    with pytest.raises(InvalidInputError, match="scheme 'ftp'"):
        detect_source("ftp://host/file.mp4")
    assert detect_source("v4l2src ! videoconvert ! appsink").api == "gstreamer"
    assert detect_source(str(clip)).kind == "video"
    assert detect_source(f"file://{clip}").kind == "video"
    assert detect_source(str(frames)).kind == "folder"
    assert detect_source(str(frames / "img1.png")).kind == "image"
    noext = tmp_path / "recording"
    noext.write_bytes(clip.read_bytes())
    assert detect_source(str(noext)).kind == "video"
    with open_source(str(noext)) as src:
        assert len(list(src)) == 7
    # rosbag2 shapes (contents not needed for detection)
    bagdir = tmp_path / "bag"
    bagdir.mkdir()
    (bagdir / "metadata.yaml").write_text("x")
    assert detect_source(str(bagdir)).kind == "rosbag2"
    assert detect_source(str(bagdir / "metadata.yaml")).kind == "rosbag2"
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "rec_0.mcap").write_bytes(b"x")
    assert detect_source(str(loose)).kind == "rosbag2"
    assert detect_source(str(loose / "rec_0.mcap")).kind == "rosbag2"
    (tmp_path / "a.db3").write_bytes(b"x")
    assert detect_source(str(tmp_path / "a.db3")).kind == "rosbag2"
    (tmp_path / "old.bag").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="ROS 1"):
        detect_source(str(tmp_path / "old.bag"))
    assert detect_source(f"  {clip}  ").kind == "video"


def test_character_device_is_a_camera() -> None:
    null = Path("/dev/null")
    if not null.exists() or not stat.S_ISCHR(null.stat().st_mode):
        pytest.skip("no /dev/null character device")
    spec = detect_source(str(null))
    assert (spec.kind, spec.api) == ("camera", "v4l2")


def test_topic_only_for_rosbags(video) -> None:
    clip, _ = video
    with pytest.raises(InvalidInputError, match="--topic"):
        open_source(str(clip), topic="/cam")


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment holding only the Orientation tag after SOI."""
    ifd = (
        b"MM\x00\x2a\x00\x00\x00\x08"
        b"\x00\x01"
        b"\x01\x12\x00\x03\x00\x00\x00\x01"
        + orientation.to_bytes(2, "big")
        + b"\x00\x00"
        + b"\x00\x00\x00\x00"
    )
    payload = b"Exif\x00\x00" + ifd
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + segment + jpeg[2:]


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", blocks(30, 24, 32))
    assert ok
    p = tmp_path / "portrait.jpg"
    p.write_bytes(with_exif_orientation(buf.tobytes(), 6))  # 6: rotate 90 degrees clockwise
    with open_source(str(p)) as src:
        (frame,) = list(src)
    assert frame.image.shape == (32, 24, 3)
