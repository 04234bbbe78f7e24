"""Frame sources for the pipeline: video files, cameras and streams, image folders, rosbag2.

``open_source(spec)`` decides from one ``--source`` string which kind it names (rules in
:mod:`rap_edge.sources._open`) and returns a :class:`FrameSource`: an iterable of
:class:`Frame` (BGR uint8 at full resolution) and a context manager. Frames that cannot be read
or decoded are skipped, counted in ``skipped`` and described in ``errors``; one bad frame never
ends a run.

```python
from rap_edge.sources import open_source

with open_source("recording/", topic="/camera/image_raw") as source:
    print(source.describe())
    for frame in source:
        use(frame.image, frame.timestamp)
    print(source.skipped, source.errors[-3:])
```

``normalize_frame`` converts any supported array (grey, BGR, RGB, BGRA, RGBA, 16-bit, float,
Bayer, YUV 4:2:2) to the pipeline's BGR uint8 and ``check_bgr_image`` checks that an array
already is; the ``*_msg_to_bgr`` helpers decode ROS image messages (``rosbags`` or ``rclpy``
ones).
"""

from __future__ import annotations

from rap_edge.sources._base import MAX_ERRORS, Frame, FrameSource, SourceKind
from rap_edge.sources._capture import (
    LIVE_STALL_SECONDS,
    MAX_CONSECUTIVE_FAILURES,
    STREAM_TIMEOUT_MS,
    CaptureSource,
    Gap,
    ReconnectPolicy,
    open_camera,
    open_video,
    redact_url,
)
from rap_edge.sources._folder import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_FILE_BYTES,
    SEQUENCE_MIN_DIGITS,
    ImageFilesSource,
    list_images,
    looks_like_sequence,
    read_image_file,
)
from rap_edge.sources._normalize import (
    ENCODINGS,
    MAX_FRAME_PIXELS,
    PixelEncoding,
    check_bgr_image,
    lookup_encoding,
    normalize_frame,
)
from rap_edge.sources._open import STREAM_SCHEMES, SourceSpec, detect_source, open_source
from rap_edge.sources._rosbag import (
    RosbagSource,
    compressed_msg_array,
    compressed_msg_to_bgr,
    image_msg_array,
    image_msg_to_bgr,
)

__all__ = [
    "ENCODINGS",
    "IMAGE_EXTENSIONS",
    "LIVE_STALL_SECONDS",
    "MAX_CONSECUTIVE_FAILURES",
    "MAX_ERRORS",
    "MAX_FRAME_PIXELS",
    "MAX_IMAGE_FILE_BYTES",
    "SEQUENCE_MIN_DIGITS",
    "STREAM_SCHEMES",
    "STREAM_TIMEOUT_MS",
    "CaptureSource",
    "Frame",
    "FrameSource",
    "Gap",
    "ImageFilesSource",
    "PixelEncoding",
    "ReconnectPolicy",
    "RosbagSource",
    "SourceKind",
    "SourceSpec",
    "check_bgr_image",
    "compressed_msg_array",
    "compressed_msg_to_bgr",
    "detect_source",
    "image_msg_array",
    "image_msg_to_bgr",
    "list_images",
    "looks_like_sequence",
    "lookup_encoding",
    "normalize_frame",
    "open_camera",
    "open_source",
    "open_video",
    "read_image_file",
    "redact_url",
]
