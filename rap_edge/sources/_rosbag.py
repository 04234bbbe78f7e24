"""rosbag2 recordings (sqlite3 and MCAP storage) as a frame source, read with ``rosbags``.

``rosbags`` is pure Python: no ROS installation is needed and nothing is started. A recording
is a folder with ``metadata.yaml`` (split recordings included), a folder holding ``.db3`` or
``.mcap`` files but no metadata, or one such file. Messages are deserialised with the type
definitions stored in the recording, or with the ROS 2 Humble definitions when it has none
(sqlite3 recordings made before Iron).

Image topics are those of type ``sensor_msgs/msg/Image`` and ``sensor_msgs/msg/CompressedImage``.
Without a topic, the only image topic is read; when there are several, the first in sorted order
is read and :meth:`RosbagSource.describe` says which and lists the others. A frame's timestamp is
the message's log (receive) time in seconds, not its header stamp.

Image messages may use the encodings of :mod:`rap_edge.sources._normalize` (``rgb8``, ``bgr8``,
``rgba8``, ``bgra8``, ``mono8``, ``mono16``, ``8UC1``, ``8UC3``, ``16UC1``, the 16-bit colour,
Bayer and YUV 4:2:2 ones); row padding (``step``) and big-endian 16-bit data are handled.
CompressedImage messages are decoded with ``cv2.imdecode`` (JPEG, PNG, ...) once their header
passed the size check of :mod:`rap_edge.sources._header`, including
``16UC1; compressedDepth`` PNGs; ``32FC1`` compressed depth is not supported. A message that
cannot be deserialised or decoded is skipped and counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.errors import InvalidInputError
from rap_edge.sources._base import FrameSource, _Read
from rap_edge.sources._header import decode_image
from rap_edge.sources._normalize import lookup_encoding, normalize_frame

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import numpy.typing as npt

__all__ = [
    "COMPRESSED_IMAGE",
    "IMAGE",
    "RosbagSource",
    "compressed_msg_array",
    "compressed_msg_to_bgr",
    "image_msg_array",
    "image_msg_to_bgr",
    "is_rosbag2_path",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
_IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
_STORAGE_SUFFIXES = (".db3", ".mcap")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_COMPRESSED_DEPTH_HEADER = 12  # image_transport's ConfigHeader: format (int32) + 2 float32


def is_rosbag2_path(path: Path) -> bool:
    """Whether ``path`` looks like a rosbag2 recording (see the module notes)."""
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            return True
        return any(p.suffix.lower() in _STORAGE_SUFFIXES and p.is_file() for p in path.iterdir())
    return path.suffix.lower() in _STORAGE_SUFFIXES or path.name == "metadata.yaml"


def _bag_paths(path: Path) -> list[Path]:
    if path.name == "metadata.yaml" and path.is_file():
        return [path.parent]
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        files = sorted(
            p for p in path.iterdir() if p.suffix.lower() in _STORAGE_SUFFIXES and p.is_file()
        )
        if files:
            return files
    return [path]


def _as_bytes_array(data: Any) -> npt.NDArray[np.uint8]:  # noqa: ANN401 (bytes-like)
    if isinstance(data, np.ndarray):
        return (
            data.reshape(-1).view(np.uint8)
            if data.dtype.itemsize == 1
            else (np.frombuffer(data.tobytes(), dtype=np.uint8))
        )
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


def image_msg_array(msg: Any) -> tuple[npt.NDArray[Any], str]:  # noqa: ANN401 (a message)
    """The pixels of a ``sensor_msgs/Image`` as an array [H, W] or [H, W, C], and its encoding.

    Works with any object with the message's fields (``rosbags`` or ``rclpy`` messages).
    16-bit data come back in native byte order; row padding is removed (the result may be a
    view of the message's data).

    Raises:
        InvalidInputError: for an unsupported encoding, a ``step`` shorter than a row, or data
            whose length is not ``height * step``.
    """
    encoding = str(msg.encoding)
    enc = lookup_encoding(encoding)
    if enc.bits is None:
        msg_ = f"encoding {encoding!r} does not give a bit depth"
        raise InvalidInputError(msg_)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        msg_ = f"image of {width}x{height} pixels is empty"
        raise InvalidInputError(msg_)
    depth = enc.bits // 8
    row = width * enc.channels * depth
    if step < row:
        msg_ = f"step {step} is shorter than a row of {width} {encoding} pixels ({row} bytes)"
        raise InvalidInputError(msg_)
    data = _as_bytes_array(msg.data)
    if data.size != height * step:
        msg_ = (
            f"data has {data.size} bytes; height * step is {height} * {step} = "
            f"{height * step} ({encoding}, {width}x{height})"
        )
        raise InvalidInputError(msg_)
    rows = data.reshape(height, step)[:, :row]
    if depth == 2:  # noqa: PLR2004
        big = bool(msg.is_bigendian)
        rows = rows.view(">u2" if big else "<u2").astype(np.uint16)
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    return rows.reshape(shape), encoding


def image_msg_to_bgr(msg: Any) -> npt.NDArray[np.uint8]:  # noqa: ANN401 (a message)
    """A ``sensor_msgs/Image`` as contiguous BGR uint8 [H, W, 3].

    Raises:
        InvalidInputError: if the message cannot be decoded (see :func:`image_msg_array`).
    """
    array, encoding = image_msg_array(msg)
    return normalize_frame(array, encoding)


def compressed_msg_array(msg: Any) -> npt.NDArray[Any]:  # noqa: ANN401 (a message)
    """The decoded pixels of a ``sensor_msgs/CompressedImage`` (BGR, BGRA or grey; 8/16 bit).

    The data's header is read first: an image that declares more than
    :data:`rap_edge.sources.MAX_FRAME_PIXELS` pixels, or whose format has no header check
    (:mod:`rap_edge.sources._header`), is refused without being decoded.

    Raises:
        InvalidInputError: if the data do not decode, declare too many pixels, or the format
            is unsupported.
    """
    import cv2

    fmt = str(msg.format)
    data = _as_bytes_array(msg.data)
    if "compresseddepth" in fmt.lower():
        if "32fc1" in fmt.lower():
            msg_ = f"compressed depth format {fmt!r} (quantised 32FC1) is not supported"
            raise InvalidInputError(msg_)
        if data[_COMPRESSED_DEPTH_HEADER:][: len(_PNG_MAGIC)].tobytes() == _PNG_MAGIC:
            data = data[_COMPRESSED_DEPTH_HEADER:]
    if not data.size:
        msg_ = f"empty compressed image (format {fmt!r})"
        raise InvalidInputError(msg_)
    try:
        return decode_image(data, flags=cv2.IMREAD_UNCHANGED)
    except InvalidInputError as err:
        msg_ = f"cannot decode {data.size} bytes of compressed image (format {fmt!r}): {err}"
        raise InvalidInputError(msg_) from err


def compressed_msg_to_bgr(msg: Any) -> npt.NDArray[np.uint8]:  # noqa: ANN401 (a message)
    """A ``sensor_msgs/CompressedImage`` as contiguous BGR uint8 [H, W, 3].

    Raises:
        InvalidInputError: if the message cannot be decoded.
    """
    return normalize_frame(compressed_msg_array(msg))


class RosbagSource(FrameSource):
    """Frames from one image topic of a rosbag2 recording (kind ``rosbag2``).

    Attributes:
        path: The recording.
        topic: The topic read.
        msgtype: Its message type.
        image_topics: Every image topic of the recording, sorted.
        message_count: Messages on the topic (``total`` unless looping).
        storage: ``sqlite3``, ``mcap`` or both, from the storage files' suffixes.
    """

    def __init__(self, path: Path, *, topic: str | None = None, loop: bool = False) -> None:
        """Open a recording and pick the topic.

        Args:
            path: A recording folder, a ``.db3`` or ``.mcap`` file, or a ``metadata.yaml``.
            topic: The image topic to read (the leading ``/`` may be left out); ``None``: see
                the module notes.
            loop: Start over after the last message.

        Raises:
            InvalidInputError: if the recording cannot be read, has no image topic, or has no
                image topic ``topic``.
        """
        from rosbags.highlevel import AnyReader, AnyReaderError
        from rosbags.typesys import Stores, get_typestore

        self.path = path
        self._default_store = get_typestore(Stores.ROS2_HUMBLE)
        paths = _bag_paths(path)
        suffixes = sorted(
            {
                p.suffix.lower()
                for p in (paths if paths[0].is_file() else paths[0].iterdir())
                if p.suffix
            }
        )
        self.storage = (
            "+".join(s[1:].replace("db3", "sqlite3") for s in suffixes if s in _STORAGE_SUFFIXES)
            or "unknown"
        )
        reader = AnyReader(paths, default_typestore=self._default_store)
        try:
            reader.open()
        except (AnyReaderError, OSError) as err:
            msg = f"{path}: cannot read the rosbag2 recording ({err})"
            raise InvalidInputError(msg) from err
        try:
            topics = {name: info.msgtype for name, info in reader.topics.items()}
            self.image_topics = sorted(t for t, m in topics.items() if m in _IMAGE_TYPES)
            self.topic = self._pick(topic, topics)
            self.msgtype = str(topics[self.topic])
            self._connections = [c for c in reader.connections if c.topic == self.topic]
            self.message_count = sum(c.msgcount for c in self._connections)
        except BaseException:
            reader.close()
            raise
        self._reader = reader
        super().__init__(
            "rosbag2", f"bag:{path}#{self.topic}", total=self.message_count, loop=loop
        )

    def _pick(self, topic: str | None, topics: dict[str, str | None]) -> str:
        if not self.image_topics:
            listed = ", ".join(f"{t} ({m})" for t, m in sorted(topics.items())) or "none"
            msg = (
                f"{self.path}: no sensor_msgs/msg/Image or CompressedImage topic in the "
                f"recording; its topics: {listed}"
            )
            raise InvalidInputError(msg)
        if topic is None:
            return self.image_topics[0]
        for candidate in (topic, "/" + topic.lstrip("/")):
            if candidate in self.image_topics:
                return candidate
        msg = (
            f"{self.path}: no image topic {topic!r}; its image topics: "
            f"{', '.join(self.image_topics)}"
        )
        raise InvalidInputError(msg)

    def _deserialize(self, raw: bytes, msgtype: str) -> Any:  # noqa: ANN401 (a message)
        store = self._reader.typestore
        if msgtype not in store.fielddefs:
            store = self._default_store
        return store.deserialize_cdr(raw, msgtype)

    def _pass(self, number: int) -> Iterator[_Read]:
        del number
        messages = self._reader.messages(connections=self._connections)
        while not self._closed:
            try:
                connection, stamp_ns, raw = next(messages)
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 (storage errors vary; the recording is broken)
                self._note(f"{self.name}: reading the recording failed, stopping ({err})")
                return
            timestamp = stamp_ns / 1e9
            try:
                msg = self._deserialize(raw, connection.msgtype)
                if connection.msgtype == COMPRESSED_IMAGE:
                    array = compressed_msg_array(msg)
                    yield _Read(
                        self.name, array=array, timestamp=timestamp, described=str(msg.format)
                    )
                    continue
                array, encoding = image_msg_array(msg)
            except InvalidInputError as err:
                yield _Read(self.name, timestamp=timestamp, error=str(err))
                continue
            except Exception as err:  # noqa: BLE001 (the deserialiser raises assorted errors)
                yield _Read(
                    self.name, timestamp=timestamp, error=f"cannot deserialise the message ({err})"
                )
                continue
            yield _Read(self.name, array=array, timestamp=timestamp, encoding=encoding)

    def _describe(self) -> str:
        text = (
            f"rosbag2 {self.path} ({self.storage}): topic {self.topic} ({self.msgtype}, "
            f"{self.message_count} messages)"
        )
        if len(self.image_topics) > 1:
            others = [t for t in self.image_topics if t != self.topic]
            text += (
                f"; first of {len(self.image_topics)} image topics, others: "
                f"{', '.join(others)} (choose one with --topic)"
            )
        return text

    def _close(self) -> None:
        self._reader.close()
