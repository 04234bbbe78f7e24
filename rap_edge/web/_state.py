"""What the web app drives: one session, one live runtime, the cameras feeding it.

:class:`WebState` holds no recognition logic of its own: frames go to
:meth:`rap_edge.live.LiveRuntime.submit` from one reader thread per source, edits go through
the session, and what the processing thread reports (``on_result``) is kept for the viewers,
logged as sightings and passed to MQTT. Viewers encode the latest annotated frame on their own
threads (once per frame, shared), so a slow browser never slows recognition.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.errors import ConceptNotFoundError, FaceCountError, InvalidInputError, RapEdgeError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import numpy as np
    import numpy.typing as npt

    from rap_edge.app import LiveClusters, Session
    from rap_edge.generate import GenerationResult
    from rap_edge.interfaces import Concept, ImageRecord
    from rap_edge.live import LiveRuntime
    from rap_edge.pipeline import FrameResult
    from rap_edge.sources import FrameSource, ReconnectPolicy
    from rap_edge.web._mqtt import MqttBridge
    from rap_edge.web._sightings import Sightings

__all__ = ["Camera", "WebState", "camera_name"]

log = logging.getLogger("rap_edge.web")

PURGE_EVERY_S = 3600.0  # how often the retention and storage cap are applied while serving
STREAM_MAX_SIDE = 960  # viewers get at most this many pixels on the long side
MAX_ALIASES = 20
_NAME = re.compile(r"^(?P<name>[A-Za-z][\w-]{0,31})=(?P<spec>.+)$")


def camera_name(spec: str, index: int) -> tuple[str, str]:
    """(name, spec) of a ``--source``: ``NAME=SPEC`` names it; else a name from the spec."""
    found = _NAME.match(spec)
    if found and "://" not in found["name"]:
        return found["name"], found["spec"]
    if spec.isdigit():
        return f"camera{spec}", spec
    if "://" in spec:
        from rap_edge.sources import redact_url

        return redact_url(spec), spec
    return (Path(spec).name or f"source{index}"), spec


@contextlib.contextmanager
def _whole_image_worded() -> Iterator[None]:
    """The object-enrollment refusal, naming this front end's switch instead of the CLI's."""
    try:
        yield
    except InvalidInputError as err:
        text = str(err)
        if "--whole-image" not in text:
            raise
        raise InvalidInputError(
            text.replace("--whole-image", "'use the whole photo' (whole_image)")
        ) from err


@dataclass(slots=True)
class Camera:
    """One source: its reader thread and what the viewers see."""

    index: int
    name: str
    spec: str
    max_fps: float
    source: FrameSource | None = None
    thread: threading.Thread | None = None
    error: str = ""
    frames: int = 0
    seq: int = 0  # processed frames seen by on_result
    image: Any = None
    result: FrameResult | None = None
    description: str = ""
    described_at: float = 0.0
    jpeg: tuple[int, bytes] | None = None
    names: list[str] = field(default_factory=list)


class WebState:
    """The session, the live runtime and the cameras behind one web app."""

    def __init__(
        self,
        session: Session,
        *,
        clusters: LiveClusters | None = None,
        sightings: Sightings | None = None,
        mqtt: MqttBridge | None = None,
        stream_fps: float = 10.0,
    ) -> None:
        """Start the live runtime over ``session`` (cameras are added with :meth:`add_source`).

        The state owns the runtime, the sightings and the MQTT bridge (closed by
        :meth:`close`), not the session.
        """
        from rap_edge.live import LiveRuntime

        self.session = session
        self.clusters = clusters
        self.sightings = sightings
        self.mqtt = mqtt
        self.stream_fps = stream_fps
        self.cameras: list[Camera] = []
        self._by_name: dict[str, Camera] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._logged: dict[tuple[str, str], float] = {}
        self._faces: OrderedDict[int, bytes] = OrderedDict()
        self._faces_lock = threading.Lock()
        self.started = time.time()
        self.runtime: LiveRuntime = LiveRuntime(
            session,
            on_result=self._on_result,
            on_description=self._on_description,
            unknown=clusters,
        )
        self._housekeeper = threading.Thread(
            target=self._housekeep, name="rap-edge-retention", daemon=True
        )
        self._housekeeper.start()

    # -- cameras -----------------------------------------------------------------------------

    def add_source(
        self,
        spec: str,
        *,
        max_fps: float = 10.0,
        loop: bool = True,
        policy: ReconnectPolicy | None = None,
    ) -> Camera:
        """Open a ``--source`` and start feeding its frames to the runtime.

        ``policy``: a camera's or stream's timeouts and reconnection backoff.

        Raises:
            InvalidInputError: a bad source or a duplicate camera name.
            BackendError: a camera or stream that cannot be opened.
        """
        from rap_edge.sources import open_source

        name, target = camera_name(spec, len(self.cameras))
        if name in self._by_name:
            msg = f"two sources are named {name!r}; name them with NAME=SOURCE"
            raise InvalidInputError(msg)
        if not 0 < max_fps <= 1000:  # noqa: PLR2004
            msg = f"--max-fps must be in (0, 1000], got {max_fps}"
            raise InvalidInputError(msg)
        cam = Camera(len(self.cameras), name, target, max_fps)
        cam.source = open_source(target, loop=loop, policy=policy)
        self.cameras.append(cam)
        self._by_name[name] = cam
        cam.thread = threading.Thread(
            target=self._read, args=(cam,), name=f"rap-edge-web-{cam.index}", daemon=True
        )
        cam.thread.start()
        return cam

    def _read(self, cam: Camera) -> None:
        """One camera's reader: frames into the runtime at most ``max_fps`` per second."""
        assert cam.source is not None  # noqa: S101 - set by add_source
        period = 1.0 / cam.max_fps
        live = cam.source.kind == "camera"
        last = 0.0
        try:
            with cam.source as source:
                for frame in source:
                    if self._stop.is_set():
                        return
                    wait = last + period - time.monotonic()
                    if wait > 0:
                        if live:  # latest first: a camera's frame is dropped, not queued
                            continue
                        if self._stop.wait(wait):
                            return
                    last = time.monotonic()
                    self.runtime.submit(cam.name, frame.image, frame.image)
                    cam.frames += 1
                cam.error = "the source ended"
        except RapEdgeError as err:
            cam.error = str(err)
            log.warning("camera %s stopped: %s", cam.name, err)
        except Exception as err:  # a reader must not take the app down
            cam.error = f"{type(err).__name__}: {err}"
            log.exception("camera %s failed", cam.name)

    def camera(self, index: int) -> Camera:
        """The camera with this index.

        Raises:
            ConceptNotFoundError: no such camera.
        """
        if not 0 <= index < len(self.cameras):
            msg = f"no camera {index} (cameras: 0..{len(self.cameras) - 1})"
            raise ConceptNotFoundError(msg)
        return self.cameras[index]

    # -- what the processing thread reports --------------------------------------------------

    def _on_result(self, source: str, result: FrameResult, image: Any) -> None:  # noqa: ANN401
        cam = self._by_name.get(source)
        names = sorted({r.name for r in result.recognitions if r.decision == "known" and r.name})
        if cam is not None:
            with self._cond:
                cam.image, cam.result, cam.names = image, result, names
                cam.seq += 1
                self._cond.notify_all()
        now = time.time()
        if self.sightings is not None:
            for r in result.recognitions:
                if r.decision != "known" or r.concept_id is None:
                    continue
                key = (r.concept_id, source)
                if now - self._logged.get(key, 0.0) >= 1.0:  # at most once a second
                    self._logged[key] = now
                    self.sightings.log(r.concept_id, r.name or r.concept_id, source, now)
        if self.mqtt is not None:
            self.mqtt.observe(source, result, image)

    def _on_description(
        self,
        source: str,
        index: int | None,  # noqa: ARG002 - the runtime's signature
        answer: GenerationResult,
        meta: Any,  # noqa: ARG002, ANN401
    ) -> None:
        cam = self._by_name.get(source)
        if cam is not None:
            cam.description, cam.described_at = answer.text, time.time()

    # -- viewers -----------------------------------------------------------------------------

    def frame_jpeg(self, cam: Camera) -> tuple[int, bytes] | None:
        """The camera's latest processed frame, annotated and JPEG-encoded (shared cache)."""
        with self._cond:
            seq, image, result, cached = cam.seq, cam.image, cam.result, cam.jpeg
        if image is None or result is None:
            return None
        if cached is not None and cached[0] == seq:
            return cached
        import cv2

        from rap_edge.pipeline import annotate

        # Scale first, then draw the scaled boxes: the full frame is never copied.
        scale = STREAM_MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            recs = [
                dataclasses.replace(r, box=tuple(v * scale for v in r.box))
                for r in result.recognitions
            ]
            result = dataclasses.replace(
                result, width=small.shape[1], height=small.shape[0], recognitions=recs
            )
            image = small
        out = annotate(image, result, None)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 75])
        if not ok:
            return None
        jpeg = (seq, buf.tobytes())
        with self._cond:
            if cam.jpeg is None or cam.jpeg[0] < seq:
                cam.jpeg = jpeg
        return jpeg

    def mjpeg(self, cam: Camera, boundary: str) -> Iterator[bytes]:
        """A multipart MJPEG stream of the camera, at most ``stream_fps`` frames a second."""
        sent = -1
        period = 1.0 / self.stream_fps
        while not self._stop.is_set():
            t0 = time.monotonic()
            with self._cond:
                if cam.seq == sent:
                    self._cond.wait(1.0)
                changed = cam.seq != sent
            if not changed:
                continue
            jpeg = self.frame_jpeg(cam)
            if jpeg is None:
                continue
            sent = jpeg[0]
            yield (
                (
                    f"--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg[1])}"
                    "\r\n\r\n"
                ).encode("ascii")
                + jpeg[1]
                + b"\r\n"
            )
            rest = period - (time.monotonic() - t0)
            if rest > 0 and self._stop.wait(rest):
                return

    def wait_frame(self, cam: Camera, after: int, timeout: float) -> int:
        """Wait until the camera has processed a frame after ``after``; returns its seq."""
        end = time.monotonic() + timeout
        with self._cond:
            while cam.seq <= after and not self._stop.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return cam.seq

    # -- concepts ----------------------------------------------------------------------------

    @staticmethod
    @contextlib.contextmanager
    def _faces_worded() -> Iterator[None]:
        """The session's one-face rule, in the family's words (the rule is not repeated here)."""
        try:
            yield
        except FaceCountError as err:
            if err.faces == 0:
                msg = (
                    f"photo #{err.image}: no face found; use a photo where {err.name}'s face is "
                    "clear and not too small (nothing was changed)"
                )
            else:
                msg = (
                    f"photo #{err.image}: {err.faces} faces found; use a photo with only "
                    f"{err.name}'s face (nothing was changed)"
                )
            raise InvalidInputError(msg) from err

    def add_concept(  # noqa: PLR0913 - the fields of a concept
        self,
        name: str,
        category: str,
        *,
        info: str = "",
        aliases: Sequence[str] = (),
        images: Sequence[npt.NDArray[np.uint8]] = (),
        whole_image: bool = False,
    ) -> Concept:
        """Add a concept.

        A person's photos must each show one face; an object's or pet's are cut to the
        detected object unless ``whole_image``.
        """
        with self._faces_worded(), _whole_image_worded():
            return self.runtime.add_concept(
                name,
                category,
                info=info,
                aliases=list(aliases)[:MAX_ALIASES],
                images=images,
                whole_image=whole_image,
            )

    def update_concept(  # noqa: PLR0913 - the fields of a concept
        self,
        ref: str,
        *,
        name: str | None = None,
        category: str | None = None,
        info: str | None = None,
        aliases: Sequence[str] | None = None,
        add_images: Sequence[npt.NDArray[np.uint8]] = (),
        whole_image: bool = False,
    ) -> Concept:
        """Change a concept; added photos of a person must each show one face."""
        concept = self.runtime.get_concept(ref)
        with self._faces_worded(), _whole_image_worded():
            return self.runtime.update_concept(
                concept.id,
                name=name,
                category=category,
                info=info,
                aliases=None if aliases is None else list(aliases)[:MAX_ALIASES],
                add_images=add_images,
                whole_image=whole_image,
            )

    def forget(self, ref: str) -> Concept:
        """Forget a concept and its MQTT entities (its sightings go with it in the memory)."""
        concept = self.runtime.remove_concept(ref)
        if self.mqtt is not None:
            self.mqtt.forget(concept)
        with self._faces_lock:
            for rec in concept.images:
                self._faces.pop(rec.id, None)
        return concept

    def image_record(self, image_id: int, concept: str | None = None) -> ImageRecord:
        """A reference image by its id (of ``concept`` when given).

        Raises:
            ConceptNotFoundError: no such image.
        """
        concepts = [self.runtime.get_concept(concept)] if concept else self.runtime.list_concepts()
        for c in concepts:
            for rec in c.images:
                if rec.id == image_id:
                    return rec
        msg = f"no reference image {image_id}" + (f" of {concept!r}" if concept else "")
        raise ConceptNotFoundError(msg)

    def remove_image(self, ref: str, image_id: int) -> Concept:
        """Remove one reference photo of a concept (never its last one).

        Raises:
            ConceptNotFoundError: no such concept or image.
            InvalidInputError: the concept's only photo.
        """
        concept = self.session.remove_image(ref, image_id)  # the streams re-decide at once
        with self._faces_lock:
            self._faces.pop(image_id, None)
        return concept

    def face_crop(self, image_id: int) -> bytes:
        """A JPEG of the largest face in a reference photo (the whole photo if none)."""
        with self._faces_lock:
            if image_id in self._faces:
                return self._faces[image_id]
        import cv2

        rec = self.image_record(image_id)
        image: Any = cv2.imread(str(rec.path), cv2.IMREAD_COLOR)
        if image is None:
            msg = f"reference image {image_id} cannot be read"
            raise ConceptNotFoundError(msg)
        dets = self.session.models.detect(image)
        if dets:
            d = max(dets, key=lambda d: (d.x2 - d.x1) * (d.y2 - d.y1))
            w, h = d.x2 - d.x1, d.y2 - d.y1
            x1, y1 = max(0, int(d.x1 - 0.25 * w)), max(0, int(d.y1 - 0.3 * h))
            x2 = min(image.shape[1], int(d.x2 + 0.25 * w))
            y2 = min(image.shape[0], int(d.y2 + 0.2 * h))
            image = image[y1:y2, x1:x2]
        scale = 320 / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 88])
        data = buf.tobytes() if ok else b""
        with self._faces_lock:
            self._faces[image_id] = data
            while len(self._faces) > 256:  # noqa: PLR2004
                self._faces.popitem(last=False)
        return data

    # -- strangers ---------------------------------------------------------------------------

    def _clusters(self) -> LiveClusters:
        if self.clusters is None:
            msg = "unknown faces are not clustered here (started with --no-cluster)"
            raise InvalidInputError(msg)
        return self.clusters

    def cluster_crop(self, cluster: str, n: int) -> bytes:
        """The n-th best crop of a cluster (by index, never by file name)."""
        paths = self._clusters().crop_paths(cluster)
        if not 0 <= n < len(paths):
            msg = f"cluster {cluster!r} has no crop {n} ({len(paths)} kept)"
            raise ConceptNotFoundError(msg)
        try:
            return paths[n].read_bytes()
        except OSError as err:
            msg = f"crop {n} of cluster {cluster!r} is gone"
            raise ConceptNotFoundError(msg) from err

    def name_cluster(
        self, cluster: str, name: str, *, category: str = "person", info: str = ""
    ) -> Concept:
        """Enroll a cluster as a concept (its crops become the reference photos)."""
        clusters = self._clusters()
        clusters.get(cluster)
        concept, _ = self.session.enroll_unknown(
            clusters, cluster, name=name, category=category, info=info
        )
        return concept

    def merge_clusters(self, source: str, into: str) -> dict[str, Any]:
        """Merge cluster ``source`` into ``into``; returns the merged cluster's listing."""
        merged = self._clusters().merge(source, into)
        return next(c for c in self._clusters().listing() if c["id"] == merged.id)

    def dismiss_cluster(self, cluster: str) -> None:
        """Delete a cluster and its crops."""
        self._clusters().dismiss(cluster)

    # -- questions ---------------------------------------------------------------------------

    def last_seen_answer(self, name: str) -> dict[str, Any]:
        """The answer to "When did you last see NAME?" from the sightings log."""
        concept = self.runtime.get_concept(name)
        rows = self.sightings.recent(concept.id, limit=1) if self.sightings else []
        if self.sightings is not None:
            self.sightings.wait_idle(2.0)
            rows = self.sightings.recent(concept.id, limit=1)
        if not rows:
            text = f"I have not seen {concept.name} since the sightings log began."
            return {"answer": text, "concept_id": concept.id, "sighting": None}
        s = rows[0]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.last_seen))
        ago = _ago(time.time() - s.last_seen)
        text = f"I last saw {concept.name} on {s.camera} at {when} ({ago} ago)."
        return {"answer": text, "concept_id": concept.id, "sighting": s.to_json()}

    def ask(
        self,
        question: str,
        *,
        image: npt.NDArray[np.uint8] | None = None,
        camera: int | None = None,
    ) -> dict[str, Any]:
        """Answer a question about a photo, a camera's latest frame, or the sightings log."""
        from rap_edge.web._sightings import parse_last_seen_question

        if not isinstance(question, str) or not question.strip():
            msg = f"the question must be non-empty text, got {question!r}"
            raise InvalidInputError(msg)
        name = parse_last_seen_question(question) if image is None else None
        if name is not None:
            try:
                out = self.last_seen_answer(name)
            except ConceptNotFoundError:
                pass  # not a known name: let the model answer it
            else:
                return {"question": question, "source": "sightings", **out}
        source = None if camera is None else self.camera(camera).name
        answer, frame = self.runtime.ask(question, image=image, source=source)
        return {
            "question": question,
            "source": "image" if image is not None else (source or "latest frame"),
            "answer": answer.text,
            "backend": answer.backend,
            "recognitions": [r.to_json() for r in frame.recognitions],
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """A JSON-ready snapshot: cameras, counters, concepts."""
        from rap_edge import __version__

        stats = self.runtime.stats().sources
        return {
            "ok": all(not c.error or c.error == "the source ended" for c in self.cameras),
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            "concepts": len(self.runtime.list_concepts()),
            "clusters": len(self.clusters.listing()) if self.clusters is not None else None,
            "mqtt": None if self.mqtt is None else self.mqtt.status(),
            "cameras": [
                {
                    "index": c.index,
                    "name": c.name,
                    "read": c.frames,
                    "error": c.error or None,
                    **(stats[c.name].to_json() if c.name in stats else {}),
                }
                for c in self.cameras
            ],
        }

    def purge(self) -> dict[str, int]:
        """Apply the retention to crops and sightings."""
        crops = self.clusters.purge() if self.clusters is not None else 0
        rows = self.sightings.purge() if self.sightings is not None else 0
        return {"crops": crops, "sightings": rows}

    def _housekeep(self) -> None:
        """Apply the retention and the crops' storage cap every PURGE_EVERY_S until closed."""
        while not self._stop.wait(PURGE_EVERY_S):
            try:
                purged = self.purge()
            except Exception:
                log.exception("rap-edge serve: applying the retention failed")
                continue
            if any(purged.values()):
                log.info(
                    "retention: deleted %d stranger crop(s) and %d sighting(s)",
                    purged["crops"],
                    purged["sightings"],
                )

    @property
    def stopping(self) -> bool:
        """Whether :meth:`close` has begun (streams end)."""
        return self._stop.is_set()

    def close(self) -> None:
        """Stop the readers, streams, runtime, sightings and MQTT (not the session)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for cam in self.cameras:
            if cam.thread is not None:
                cam.thread.join(5.0)
        self.runtime.close()
        if self.mqtt is not None:
            self.mqtt.close()
        if self.sightings is not None:
            self.sightings.close()


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 90:  # noqa: PLR2004
        return f"{s} s"
    if s < 5400:  # noqa: PLR2004
        return f"{round(s / 60)} min"
    if s < 172800:  # noqa: PLR2004
        return f"{round(s / 3600)} h"
    return f"{round(s / 86400)} days"
