"""rosbag2 recordings written here with rosbags (sqlite3 and MCAP), read back as frames."""

from __future__ import annotations

import array
import itertools
from types import SimpleNamespace
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from rap_edge.errors import InvalidInputError
from rap_edge.sources import (
    RosbagSource,
    compressed_msg_to_bgr,
    detect_source,
    image_msg_array,
    image_msg_to_bgr,
    open_source,
)

if TYPE_CHECKING:
    from pathlib import Path

STORE = get_typestore(Stores.ROS2_HUMBLE)
Image = STORE.types["sensor_msgs/msg/Image"]
CompressedImage = STORE.types["sensor_msgs/msg/CompressedImage"]
Header = STORE.types["std_msgs/msg/Header"]
Time = STORE.types["builtin_interfaces/msg/Time"]
String = STORE.types["std_msgs/msg/String"]

H, W = 6, 8
RNG = np.random.default_rng(3)
BGR = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (H, W), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
ALPHA = np.full((H, W, 1), 9, np.uint8)
T0 = 1_700_000_000_000_000_000  # ns


def header() -> object:
    return Header(stamp=Time(sec=0, nanosec=0), frame_id="cam")


def image_msg(
    encoding: str,
    pixels: np.ndarray,
    *,
    pad: int = 0,
    big: bool = False,
    data: np.ndarray | None = None,
) -> object:
    h, w = pixels.shape[:2]
    raw = pixels.astype(">u2" if big else "<u2") if pixels.dtype == np.uint16 else pixels
    rows = raw.reshape(h, -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xEE, np.uint8)], axis=1)
    body = np.ascontiguousarray(rows).reshape(-1) if data is None else data
    return Image(
        header=header(),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=int(big),
        step=rows.shape[1],
        data=body,
    )


def compressed_msg(fmt: str, data: bytes) -> object:
    return CompressedImage(
        header=header(), format=fmt, data=np.frombuffer(data, dtype=np.uint8).copy()
    )


def encoded(ext: str, pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, pixels)
    assert ok
    return buf.tobytes()


BGR16 = BGR.astype(np.uint16) * 256 + 17

# (encoding or format, message, expected BGR or None if it must be skipped)
IMAGES = [
    ("rgb8", image_msg("rgb8", BGR[:, :, ::-1]), BGR),
    ("bgr8 padded", image_msg("bgr8", BGR, pad=5), BGR),
    ("mono8", image_msg("mono8", GREY), np.repeat(GREY[:, :, None], 3, 2)),
    (
        "mono16",
        image_msg("mono16", GREY16),
        np.repeat((GREY16 >> 8).astype(np.uint8)[:, :, None], 3, 2),
    ),
    (
        "16UC1 big-endian padded",
        image_msg("16UC1", GREY16, big=True, pad=4),
        np.repeat((GREY16 >> 8).astype(np.uint8)[:, :, None], 3, 2),
    ),
    ("rgba8", image_msg("rgba8", np.concatenate([BGR[:, :, ::-1], ALPHA], 2)), BGR),
    ("bgra8", image_msg("bgra8", np.concatenate([BGR, ALPHA], 2)), BGR),
    ("8UC3", image_msg("8UC3", BGR), BGR),
    ("8UC1", image_msg("8UC1", GREY), np.repeat(GREY[:, :, None], 3, 2)),
    ("rgb16", image_msg("rgb16", BGR16[:, :, ::-1]), BGR),
    ("wrong length", image_msg("bgr8", BGR, data=BGR.reshape(-1)[:-7].copy()), None),
    ("unknown encoding", image_msg("32FC1", GREY.view(np.uint8)), None),
    ("bgr8 last", image_msg("bgr8", BGR[::-1].copy()), BGR[::-1]),
]
COMPRESSED = [
    ("png", compressed_msg("png", encoded(".png", BGR)), BGR),
    (
        "rgb8; png compressed bgr8",
        compressed_msg("rgb8; png compressed bgr8", encoded(".png", BGR[::-1])),
        BGR[::-1],
    ),
    ("corrupt jpeg", compressed_msg("jpeg", b"\xff\xd8\xff\xe0 not really a jpeg"), None),
    ("empty", compressed_msg("jpeg", b""), None),
    (
        "16-bit png",
        compressed_msg("mono16; png compressed mono16", encoded(".png", GREY16)),
        np.repeat((GREY16 >> 8).astype(np.uint8)[:, :, None], 3, 2),
    ),
    (
        "compressedDepth",
        compressed_msg("16UC1; compressedDepth png", bytes(12) + encoded(".png", GREY16)),
        np.repeat((GREY16 >> 8).astype(np.uint8)[:, :, None], 3, 2),
    ),
    (
        "jpeg",
        compressed_msg("jpeg", encoded(".jpg", BGR)),
        cv2.imdecode(np.frombuffer(encoded(".jpg", BGR), np.uint8), cv2.IMREAD_COLOR),
    ),
]


def write_bag(
    path: Path, plugin: StoragePlugin, *, with_images: bool = True, garbage: bool = True
) -> Path:
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        other = writer.add_connection("/chatter", String.__msgtype__, typestore=STORE)
        writer.write(other, T0, STORE.serialize_cdr(String(data="hi"), String.__msgtype__))
        if not with_images:
            return path
        raw = writer.add_connection("/cam/image", Image.__msgtype__, typestore=STORE)
        comp = writer.add_connection(
            "/cam/compressed", CompressedImage.__msgtype__, typestore=STORE
        )
        for i, (_, msg, _) in enumerate(IMAGES):
            writer.write(raw, T0 + i * 100_000_000, STORE.serialize_cdr(msg, Image.__msgtype__))
        if garbage:  # not CDR at all: deserialisation fails
            writer.write(raw, T0 + len(IMAGES) * 100_000_000, b"\x00\x01\x00\x00garbage")
        for i, (_, msg, _) in enumerate(COMPRESSED):
            writer.write(
                comp,
                T0 + 50_000_000 + i * 100_000_000,
                STORE.serialize_cdr(msg, CompressedImage.__msgtype__),
            )
    return path


@pytest.fixture(
    scope="module", params=[StoragePlugin.SQLITE3, StoragePlugin.MCAP], ids=["sqlite3", "mcap"]
)
def bag(request, tmp_path_factory) -> tuple[Path, StoragePlugin]:
    root = tmp_path_factory.mktemp("bags")
    return write_bag(root / f"rec_{request.param.name.lower()}", request.param), request.param


def test_raw_images_decode_skip_and_time(bag) -> None:
    path, plugin = bag
    assert detect_source(str(path)).kind == "rosbag2"
    with open_source(str(path), topic="/cam/image") as src:
        assert isinstance(src, RosbagSource)
        assert src.kind == "rosbag2"
        assert src.total == len(IMAGES) + 1
        assert src.image_topics == ["/cam/compressed", "/cam/image"]
        assert src.storage == ("mcap" if plugin == StoragePlugin.MCAP else "sqlite3")
        frames = list(src)
        skipped, errors = src.skipped, src.errors
    good = [(i, name, want) for i, (name, _, want) in enumerate(IMAGES) if want is not None]
    assert [f.index for f in frames] == [i for i, _, _ in good]
    for frame, (i, name, want) in zip(frames, good, strict=True):
        np.testing.assert_array_equal(frame.image, want, err_msg=name)
        assert frame.image.flags.c_contiguous
        assert frame.timestamp == pytest.approx(T0 / 1e9 + i * 0.1)
        assert frame.source == f"bag:{path}#/cam/image"
    assert frames[0].encoding == "rgb8"
    assert frames[3].orig_dtype == "uint16"
    assert skipped == 3
    assert "height * step" in errors[0]
    assert errors[0].startswith(f"frame 10 (bag:{path}#/cam/image): data has 137 bytes")
    assert "unsupported image encoding '32FC1'" in errors[1]
    assert errors[2].startswith("frame 13") and "deserialise" in errors[2]


def test_compressed_images(bag) -> None:
    path, _ = bag
    with open_source(str(path), topic="cam/compressed") as src:  # leading slash optional
        assert src.total == len(COMPRESSED)
        frames = list(src)
        assert src.skipped == 2
        assert "cannot decode" in src.errors[0]
        assert "empty compressed image" in src.errors[1]
    good = [(i, want) for i, (_, _, want) in enumerate(COMPRESSED) if want is not None]
    assert [f.index for f in frames] == [i for i, _ in good]
    for frame, (i, want) in zip(frames, good, strict=True):
        assert frame.timestamp == pytest.approx(T0 / 1e9 + 0.05 + i * 0.1)
        np.testing.assert_array_equal(frame.image, want)
    assert frames[0].encoding == "png"
    assert frames[-1].encoding == "jpeg"


def test_default_topic_is_first_image_topic_and_said(bag) -> None:
    path, _ = bag
    with open_source(str(path)) as src:
        assert src.topic == "/cam/compressed"
        text = src.describe()
    assert "first of 2 image topics" in text
    assert "/cam/image" in text
    assert "--topic" in text


def test_unknown_topic_lists_image_topics(bag) -> None:
    path, _ = bag
    with pytest.raises(
        InvalidInputError,
        match=r"no image topic '/chatter'.*"
        r"/cam/compressed, /cam/image",
    ):
        open_source(str(path), topic="/chatter")


def test_storage_file_alone_and_folder_without_metadata(bag, tmp_path) -> None:
    path, plugin = bag
    suffix = ".mcap" if plugin == StoragePlugin.MCAP else ".db3"
    (storage,) = [p for p in path.iterdir() if p.suffix == suffix]
    with open_source(str(storage), topic="/cam/image") as src:
        assert src.total == len(IMAGES) + 1
        assert len(list(src)) == len(IMAGES) - 2
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / storage.name).write_bytes(storage.read_bytes())
    with open_source(str(loose), topic="/cam/image") as src:
        assert len(list(src)) == len(IMAGES) - 2
    with open_source(str(path / "metadata.yaml"), topic="/cam/image") as src:
        assert len(list(src)) == len(IMAGES) - 2


def test_loop_keeps_timestamps_increasing(bag) -> None:
    path, _ = bag
    with open_source(str(path), topic="/cam/compressed", loop=True) as src:
        assert src.total is None
        frames = []
        for f in src:
            frames.append(f)
            if len(frames) == 12:
                break
    stamps = [f.timestamp for f in frames]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    assert [f.index for f in frames][:6] == [0, 1, 4, 5, 6, 7]


def test_bag_without_image_topics(tmp_path) -> None:
    path = write_bag(tmp_path / "plain", StoragePlugin.MCAP, with_images=False)
    with pytest.raises(
        InvalidInputError, match=r"no sensor_msgs.*/chatter \(std_msgs/msg/String\)"
    ):
        open_source(str(path))


def test_unreadable_recordings(tmp_path) -> None:
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"this is not mcap")
    with pytest.raises(InvalidInputError, match=r"junk\.mcap: cannot read the rosbag2"):
        open_source(str(junk))
    db = tmp_path / "junk.db3"
    db.write_bytes(b"this is not sqlite" * 10)
    with pytest.raises(InvalidInputError, match="cannot read the rosbag2"):
        open_source(str(db))
    empty = tmp_path / "emptybag"
    empty.mkdir()
    (empty / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    with pytest.raises(InvalidInputError, match="cannot read the rosbag2"):
        open_source(str(empty))


def test_message_helpers_take_rclpy_style_messages() -> None:
    msg = SimpleNamespace(
        height=H,
        width=W,
        encoding="rgb8",
        is_bigendian=0,
        step=W * 3,
        data=array.array("B", BGR[:, :, ::-1].tobytes()),
    )
    np.testing.assert_array_equal(image_msg_to_bgr(msg), BGR)
    msg16 = SimpleNamespace(
        height=H,
        width=W,
        encoding="mono16",
        is_bigendian=1,
        step=W * 2 + 2,
        data=b"".join(r.astype(">u2").tobytes() + b"\0\0" for r in GREY16),
    )
    arr, enc = image_msg_array(msg16)
    assert enc == "mono16"
    np.testing.assert_array_equal(arr, GREY16)
    comp = SimpleNamespace(format="png", data=encoded(".png", BGR))
    np.testing.assert_array_equal(compressed_msg_to_bgr(comp), BGR)
    short = SimpleNamespace(
        height=H, width=W, encoding="bgr8", is_bigendian=0, step=W * 2, data=bytes(H * W * 2)
    )
    with pytest.raises(InvalidInputError, match="step 16 is shorter"):
        image_msg_array(short)
    with pytest.raises(InvalidInputError, match="does not give a bit depth"):
        image_msg_array(
            SimpleNamespace(
                height=1, width=1, encoding="rgb", is_bigendian=0, step=3, data=bytes(3)
            )
        )
    with pytest.raises(InvalidInputError, match="32FC1.*not supported"):
        compressed_msg_to_bgr(SimpleNamespace(format="32FC1; compressedDepth png", data=b"x"))
