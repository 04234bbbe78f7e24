"""One ``--source`` string, whichever kind of source it names.

Rules, first match wins (:func:`detect_source`):

1. Digits only (``0``, ``2``): an OpenCV camera index. A file named ``0`` is ``./0``.
2. A URL with scheme ``rtsp``, ``rtsps``, ``rtmp``, ``http``, ``https``, ``udp``, ``tcp``,
   ``rtp`` or ``srt``: a network stream (kind ``camera``). ``file://`` URLs are paths; other
   schemes are refused.
3. A GStreamer pipeline (contains ``!`` and ``appsink``): kind ``camera``.
4. A path (``~`` expanded) that does not exist: refused, naming it.
5. A V4L2 device (``/dev/video*`` or another character device): kind ``camera``.
6. A folder with ``metadata.yaml``, or with ``.db3`` / ``.mcap`` files in it; a ``.db3`` or
   ``.mcap`` file; a recording's ``metadata.yaml``: ``rosbag2``. A ROS 1 ``.bag`` is refused.
7. Another folder: ``folder`` (its image files, see :mod:`rap_edge.sources._folder`).
8. A file with an image extension: ``image``.
9. Any other file: ``video`` (OpenCV/FFmpeg decides whether it can read it).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rap_edge.errors import InvalidInputError
from rap_edge.sources._capture import ReconnectPolicy, open_camera, open_video, redact_url
from rap_edge.sources._folder import IMAGE_EXTENSIONS, ImageFilesSource, is_image_path, list_images
from rap_edge.sources._rosbag import RosbagSource, is_rosbag2_path

if TYPE_CHECKING:
    from rap_edge.sources._base import FrameSource, SourceKind

__all__ = ["STREAM_SCHEMES", "SourceSpec", "detect_source", "open_source"]

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "rtp", "srt"})
"""URL schemes opened as network streams."""

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What a ``--source`` string names, before anything is opened.

    Attributes:
        kind: The source kind.
        target: Camera index (int), URL, pipeline or device path (str), or a filesystem path.
        api: For cameras: ``any`` (index), ``stream`` (URL), ``gstreamer`` or ``v4l2``;
            otherwise ``file``.
    """

    kind: SourceKind
    target: int | str | Path
    api: str = "file"


def detect_source(spec: str) -> SourceSpec:
    """Decide what kind of source ``spec`` names (rules in the module notes); opens nothing.

    Raises:
        InvalidInputError: if ``spec`` is empty, a URL with an unsupported scheme, a path that
            does not exist, or a ROS 1 bag.
    """
    text = spec.strip()
    if not text:
        msg = "the source is empty; give a video, image, folder, rosbag2, camera index or URL"
        raise InvalidInputError(msg)
    if text.isdigit() and text.isascii():
        return SourceSpec("camera", int(text), "any")
    url = _URL.match(text)
    if url:
        scheme = url.group(1).lower()
        if scheme == "file":
            text = text[len("file://") :]
        elif scheme in STREAM_SCHEMES:
            return SourceSpec("camera", text, "stream")
        else:
            msg = (
                f"{redact_url(text)}: URL scheme {scheme!r} is not supported; streams use "
                f"{', '.join(sorted(STREAM_SCHEMES))}"
            )
            raise InvalidInputError(msg)
    if "!" in text and "appsink" in text:
        return SourceSpec("camera", text, "gstreamer")
    path = Path(text).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        msg = f"{path}: cannot use this source ({err.strerror or err})"
        raise InvalidInputError(msg) from err
    if mode is None:
        msg = f"{path}: no such file or folder (and not a camera index or stream URL)"
        raise InvalidInputError(msg)
    if stat.S_ISCHR(mode):
        return SourceSpec("camera", str(path), "v4l2")
    if path.suffix.lower() == ".bag" and not path.is_dir():
        msg = f"{path}: ROS 1 bags are not supported; convert it to rosbag2 (rosbags-convert)"
        raise InvalidInputError(msg)
    try:
        if is_rosbag2_path(path):
            return SourceSpec("rosbag2", path)
    except OSError as err:
        msg = f"{path}: cannot list the folder ({err.strerror or err})"
        raise InvalidInputError(msg) from err
    if path.is_dir():
        return SourceSpec("folder", path)
    if is_image_path(path):
        return SourceSpec("image", path)
    return SourceSpec("video", path)


def open_source(
    spec: str,
    *,
    topic: str | None = None,
    loop: bool = False,
    sequence: bool | None = None,
    policy: ReconnectPolicy | None = None,
) -> FrameSource:
    """Open the frame source a ``--source`` string names (see :func:`detect_source`).

    Args:
        spec: A video or image file, an image folder, a rosbag2 recording, a camera index, a
            device path, a stream URL or a GStreamer pipeline.
        topic: The image topic of a rosbag2 recording (refused for other kinds); ``None``
            picks one (see :mod:`rap_edge.sources._rosbag`).
        loop: Start over at the end (videos, image files, recordings; ignored for cameras and
            streams, whose ``loop`` stays ``False``).
        policy: For cameras, streams and pipelines: connect and read timeouts and the
            reconnection backoff (default :class:`~rap_edge.sources.ReconnectPolicy`'s);
            ignored for the other kinds.
        sequence: For an image folder: its images are frames of one recording (True) or
            independent photos (False); None decides from the file names (see
            :func:`rap_edge.sources.looks_like_sequence`). Other kinds ignore it.

    Returns:
        An open source; use it in a ``with`` block (or call ``close``).

    Raises:
        InvalidInputError: for a bad or missing path, a file OpenCV cannot open as a video, a
            folder without images, a recording without the topic, or ``topic`` given for a
            source that is not a recording.
        BackendError: if a camera or stream cannot be opened within the policy's
            ``connect_timeout``.
    """
    found = detect_source(spec)
    if topic is not None and found.kind != "rosbag2":
        msg = f"--topic applies to rosbag2 recordings; {spec!r} is a {found.kind} source"
        raise InvalidInputError(msg)
    if found.kind == "camera":
        target = found.target if isinstance(found.target, int) else str(found.target)
        return open_camera(target, api=found.api, policy=policy)
    path = found.target if isinstance(found.target, Path) else Path(str(found.target))
    if found.kind == "rosbag2":
        return RosbagSource(path, topic=topic, loop=loop)
    if found.kind == "folder":
        images = list_images(path)
        if not images:
            exts = " ".join(sorted(IMAGE_EXTENSIONS))
            msg = f"{path}: no image files in the folder (looked for {exts})"
            raise InvalidInputError(msg)
        return ImageFilesSource(
            images, kind="folder", name=str(path), loop=loop, sequence=sequence
        )
    if found.kind == "image":
        return ImageFilesSource([path], kind="image", name=str(path), loop=loop)
    return open_video(path, loop=loop)
