"""INT8 calibration sets collected from the user's own cameras, videos and recordings.

``collect(source, out, frames=N)`` reads a frame source (anything ``rap-edge run --source``
takes: a video, an image folder, a rosbag2 recording, a camera index, a device, a stream URL)
and keeps up to ``N`` *diverse* frames as JPEG files plus a manifest, ``set.json``::

    {"version": 1, "name": "kitchen", "source": "kitchen.mp4", "created": "2026-...Z",
     "frames": [{"file": "frame_000120.jpg", "sha256": "...", "index": 120, "time_s": 4.0}],
     "settings": {"frames": 200, "min_change": 0.04, "stride": 3, ...},
     "summary": {"read": 5400, "kept": 200, "near_duplicates": 1530, "corrupt": 2, ...}}

Diversity: every candidate frame is reduced to a small grey thumbnail (``THUMB`` pixels, area
resampling, so sensor noise averages out); a candidate whose mean absolute difference from the
last kept frame, or from any kept frame, is below ``min_change`` (0..1 of the grey range) is a
near-duplicate and skipped. A brightness change counts as a change on purpose: INT8 ranges
must cover the scene's lighting, not only its content. When the source announces its length
(video files, folders, recordings) the candidates are every ``stride``-th frame, with the stride
chosen so that about twice ``N`` candidates spread over the whole stream, and when more than
``N`` distinct frames survive, ``N`` are picked evenly over the stream; a camera or stream
(length unknown) keeps frames as they come until ``N`` are kept, ``max_seconds`` pass, or the
user presses Ctrl-C (the set is then written with what was kept). Frames the source cannot read
or decode are skipped and counted as corrupt.

``read_set(name_or_path)`` loads a set back as BGR uint8 arrays, checking every file against
its SHA-256 in the manifest; a bare name means ``calibration/sets/NAME`` in the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.errors import InvalidInputError, ModelStoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import numpy.typing as npt

    from rap_edge.sources import FrameSource

__all__ = [
    "DEFAULT_FRAMES",
    "DEFAULT_MIN_CHANGE",
    "MANIFEST",
    "REPO_SETS",
    "THUMB",
    "collect",
    "read_set",
    "set_path",
]

REPO_SETS = Path(__file__).resolve().parent.parent / "calibration" / "sets"
"""Where a bare set name points: ``calibration/sets/`` in the repository."""

MANIFEST = "set.json"
DEFAULT_FRAMES = 200
DEFAULT_MIN_CHANGE = 0.04
THUMB = (32, 24)
"""Width and height of the grey thumbnails compared for near-duplicates."""
_OVERSAMPLE = 2  # candidates per wanted frame when the length is known
_JPEG_QUALITY = 95


def set_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The folder a set name or path means: a bare name is ``calibration/sets/NAME``."""
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, Path) or os.sep in text or "/" in text or text.startswith("~"):
        return Path(text).expanduser()
    if text in {"", ".", ".."}:
        msg = f"{text!r} is not a calibration set name"
        raise InvalidInputError(msg)
    return REPO_SETS / text


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_set(name_or_path: str | os.PathLike[str]) -> list[npt.NDArray[np.uint8]]:
    """The frames of a collected calibration set, BGR uint8, in manifest order.

    Args:
        name_or_path: A set folder, or a bare name meaning ``calibration/sets/NAME``.

    Raises:
        InvalidInputError: if the folder or its ``set.json`` is missing or not a set manifest.
        ModelStoreError: if a listed file is missing, does not match its SHA-256 or cannot be
            decoded (the message names the file).
    """
    import cv2
    import numpy as np

    folder = set_path(name_or_path)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        msg = (
            f"{folder}: not a calibration set (no {MANIFEST}; collect one with "
            "`rap-edge calibrate collect --source ... --out DIR`)"
        )
        raise InvalidInputError(msg)
    try:
        spec = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        msg = f"{manifest}: not a readable calibration set manifest ({err})"
        raise InvalidInputError(msg) from err
    if (
        not isinstance(spec, dict)
        or spec.get("version") != 1
        or not isinstance(spec.get("frames"), list)
    ):
        msg = f"{manifest}: not a version 1 calibration set manifest"
        raise InvalidInputError(msg)
    images: list[npt.NDArray[np.uint8]] = []
    for n, entry in enumerate(spec["frames"]):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("file"), str)
            and isinstance(entry.get("sha256"), str)
        ):
            msg = f"{manifest}: frame #{n} needs 'file' and 'sha256'"
            raise InvalidInputError(msg)
        name = entry["file"]
        path = folder / name
        if Path(name).name != name:
            msg = f"{manifest}: frame file {name!r} must be a plain file name in the set folder"
            raise InvalidInputError(msg)
        try:
            data = path.read_bytes()
        except OSError as err:
            msg = f"{path}: calibration frame is missing or unreadable ({err.strerror or err})"
            raise ModelStoreError(msg) from err
        if _sha256(data) != entry["sha256"]:
            msg = f"{path}: does not match its SHA-256 in {manifest} (changed or damaged)"
            raise ModelStoreError(msg)
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            msg = f"{path}: calibration frame cannot be decoded"
            raise ModelStoreError(msg)
        images.append(np.ascontiguousarray(img, dtype=np.uint8))
    if not images:
        msg = f"{manifest}: the calibration set has no frames"
        raise InvalidInputError(msg)
    return images


def _thumb(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    import cv2
    import numpy as np

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.float32).reshape(-1) / 255.0


@dataclass
class _Kept:
    file: str
    index: int
    time_s: float | None
    sha256: str
    thumb: Any = field(repr=False)


def _prepare_out(out: Path, *, force: bool) -> None:
    if out.exists() and not out.is_dir():
        msg = f"{out}: exists and is not a folder"
        raise InvalidInputError(msg)
    if out.is_dir() and any(out.iterdir()):
        if not force:
            msg = f"{out}: folder is not empty; pass --force to replace the set in it"
            raise InvalidInputError(msg)
        # --force replaces a set: only its manifest and JPEG files go, nothing else.
        for item in out.iterdir():
            if item.is_file() and (item.name == MANIFEST or item.suffix.lower() == ".jpg"):
                item.unlink()
    out.mkdir(parents=True, exist_ok=True)


def collect(  # noqa: PLR0913
    source: str | FrameSource,
    out: Path,
    *,
    frames: int = DEFAULT_FRAMES,
    min_change: float = DEFAULT_MIN_CHANGE,
    force: bool = False,
    topic: str | None = None,
    max_seconds: float | None = None,
    name: str | None = None,
    progress: bool = True,
    say: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Collect up to ``frames`` diverse frames of ``source`` into the set folder ``out``.

    Args:
        source: A ``--source`` string (see :func:`rap_edge.sources.open_source`) or an open
            source (it is closed here).
        out: The set folder; created, or replaced with ``force``.
        frames: The most frames to keep.
        min_change: Near-duplicate threshold, mean absolute difference of grey thumbnails in
            0..1 of the grey range (0 keeps every readable candidate).
        force: Replace the set in a non-empty ``out`` (only ``set.json`` and ``*.jpg`` files
            are removed).
        topic: Image topic of a rosbag2 recording.
        max_seconds: Stop reading after this long (useful for cameras).
        name: The set's name (default: the folder's name).
        progress: Show a progress bar on stderr (when it is a terminal).
        say: Where the summary line goes (default: ``print`` to stderr).

    Returns:
        The manifest written (``set.json``), with its ``summary``.

    Raises:
        InvalidInputError: for bad arguments, a non-empty ``out`` without ``force``, a source
            that cannot be opened, or a source that gave no usable frame.
    """
    import cv2
    import numpy as np
    from tqdm import tqdm

    from rap_edge.sources import open_source

    if frames < 1:
        msg = f"--frames must be at least 1, got {frames}"
        raise InvalidInputError(msg)
    if not 0.0 <= min_change < 1.0:
        msg = f"--min-change must be in [0, 1), got {min_change}"
        raise InvalidInputError(msg)
    out = Path(out).expanduser()
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        _prepare_out(out, force=False)  # raises before the source is opened
    src = open_source(source, topic=topic) if isinstance(source, str) else source
    try:
        _prepare_out(out, force=force)
    except BaseException:
        src.close()
        raise
    say = say or (lambda line: sys.stderr.write(line + "\n"))
    kept: list[_Kept] = []
    thumbs = np.zeros((0, THUMB[0] * THUMB[1]), dtype=np.float32)
    counts = {"read": 0, "candidates": 0, "near_duplicates": 0, "corrupt": 0}
    interrupted = False
    started = time.monotonic()
    with src:
        total = src.total
        stride = max(1, total // (_OVERSAMPLE * frames)) if total else 1
        bar = tqdm(
            total=total,
            unit="frame",
            desc="collect",
            disable=None if progress else True,
            file=sys.stderr,
        )
        try:
            for frame in src:
                counts["read"] += 1
                bar.update(1)
                if frame.index % stride:
                    continue
                counts["candidates"] += 1
                image = frame.image
                if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 2:  # noqa: PLR2004
                    counts["corrupt"] += 1
                    continue
                thumb = _thumb(image)
                if kept:
                    diffs = np.abs(thumbs - thumb).mean(axis=1)
                    if float(diffs[-1]) < min_change or float(diffs.min()) < min_change:
                        counts["near_duplicates"] += 1
                        continue
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
                if not ok:
                    counts["corrupt"] += 1
                    continue
                data = buf.tobytes()
                file = f"frame_{frame.index:07d}.jpg"
                (out / file).write_bytes(data)
                kept.append(_Kept(file, frame.index, frame.timestamp, _sha256(data), thumb))
                thumbs = np.vstack([thumbs, thumb[None]])
                bar.set_postfix(kept=len(kept), refresh=False)
                if not total and len(kept) >= frames:
                    break  # live source: first N distinct frames
                if max_seconds is not None and time.monotonic() - started >= max_seconds:
                    break
        except KeyboardInterrupt:
            interrupted = True  # write what was kept; Ctrl-C is how a camera session ends
        finally:
            bar.close()
        counts["corrupt"] += src.skipped
        counts["read"] += src.skipped
        described = src.name
        errors = list(src.errors[-5:])
    if len(kept) > frames:  # known length: N spread evenly over the stream
        chosen = {int(i) for i in np.rint(np.linspace(0, len(kept) - 1, frames))}
        for i, item in enumerate(kept):
            if i not in chosen:
                (out / item.file).unlink()
        dropped = len(kept) - len(chosen)
        kept = [item for i, item in enumerate(kept) if i in chosen]
    else:
        dropped = 0
    if not kept:
        msg = (
            f"{described}: no usable frame ({counts['read']} read, {counts['corrupt']} "
            "corrupt)" + (f"; last error: {errors[-1]}" if errors else "")
        )
        raise InvalidInputError(msg)
    summary = {
        **counts,
        "kept": len(kept),
        "thinned": dropped,
        "interrupted": interrupted,
        "seconds": round(time.monotonic() - started, 2),
    }
    manifest: dict[str, Any] = {
        "version": 1,
        "name": name or out.resolve().name,
        "source": described,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "frames": [
            {"file": k.file, "sha256": k.sha256, "index": k.index}
            | ({"time_s": round(k.time_s, 3)} if k.time_s is not None else {})
            for k in kept
        ],
        "settings": {
            "frames": frames,
            "min_change": min_change,
            "stride": stride,
            "thumbnail": list(THUMB),
            "jpeg_quality": _JPEG_QUALITY,
            "topic": topic,
            "max_seconds": max_seconds,
        },
        "summary": summary,
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / MANIFEST)
    say(
        f"{out}: kept {len(kept)} of {counts['read']} frame(s) read ({counts['candidates']} "
        f"candidate(s) at stride {stride}; {counts['near_duplicates']} skipped as "
        f"near-duplicate, {counts['corrupt']} corrupt"
        + (f", {dropped} thinned to spread over the stream" if dropped else "")
        + (", interrupted" if interrupted else "")
        + ")"
    )
    return manifest
