"""MQTT for Home Assistant: presence per person and camera, recognition events, discovery.

Topics (``NODE`` is ``--mqtt-node``, default ``rap_edge``; ``PERSON`` a concept id, ``CAMERA``
the camera name made topic-safe):

* ``rap_edge/NODE/status``: ``online`` / ``offline`` (retained; the broker publishes
  ``offline`` as the will when the app goes away);
* ``rap_edge/NODE/presence/PERSON/CAMERA``: ``ON`` / ``OFF`` (retained); ON while the person is
  recognised on the camera, OFF after ``expire_s`` seconds unseen;
* ``rap_edge/NODE/events``: one JSON object each time a person appears on a camera (``type``
  ``recognised``, ``concept_id``, ``name``, ``camera``, ``score``, ``box``, ``time``,
  ``snapshot_topic``);
* ``rap_edge/NODE/snapshot/CAMERA``: the annotated frame of the latest event, JPEG (retained);
* Home Assistant discovery (retained): ``homeassistant/binary_sensor/NODE/PERSON_CAMERA/config``
  (an ``occupancy`` binary sensor per person and camera) and
  ``homeassistant/camera/NODE/CAMERA/config`` (the snapshot), all in one device. Forgetting a
  concept publishes empty retained configs, which removes its entities.

paho-mqtt's network loop runs on its own thread; :meth:`MqttBridge.observe` (called on the
processing thread) only compares times and hands work to a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from rap_edge.interfaces import Concept
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FrameResult, Recognition

__all__ = ["DISCOVERY_PREFIX", "MqttBridge", "topic_safe"]

log = logging.getLogger("rap_edge.web")

DISCOVERY_PREFIX = "homeassistant"


def topic_safe(text: str) -> str:
    """A topic level and id: lower-case letters, digits and ``_`` only."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")[:64] or "x"


class MqttBridge:
    """Publishes what the live runtime sees to an MQTT broker (see the module docstring)."""

    def __init__(  # noqa: PLR0913 - where and how
        self,
        host: str,
        port: int,
        *,
        node: str = "rap_edge",
        expire_s: float = 30.0,
        memory: Memory | None = None,
        discovery_prefix: str = DISCOVERY_PREFIX,
    ) -> None:
        """Connect in the background (a broker that is down is retried by paho)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.node = topic_safe(node)
        self.base = f"rap_edge/{self.node}"
        self.expire_s = float(expire_s)
        self.memory = memory
        self.prefix = discovery_prefix
        self.status_topic = f"{self.base}/status"
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}  # (concept id, camera) -> last seen
        self._names: dict[str, str] = {}
        self._announced: set[tuple[str, str]] = set()
        self._cameras: set[str] = set()
        self.published = 0
        self.connected = False
        self._jobs: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rap-edge-{self.node}")
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(1, 30)
        self.client = client
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        self._worker = threading.Thread(target=self._work, name="rap-edge-mqtt", daemon=True)
        self._worker.start()
        self._ticker = threading.Thread(target=self._tick, name="rap-edge-mqtt-expiry")
        self._ticker.daemon = True
        self._ticker.start()

    # -- connection --------------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:  # noqa: ANN401, ARG002
        if getattr(reason, "is_failure", False):
            log.warning("MQTT: connection refused: %s", reason)
            return
        self.connected = True
        self._publish(self.status_topic, "online", retain=True)
        with self._lock:  # after a reconnect, announce again (retained anyway)
            self._announced.clear()
            cameras = set(self._cameras)
        for cam in cameras:
            self._announce_camera(cam)

    def _on_disconnect(self, *args: Any) -> None:  # noqa: ANN401, ARG002 - paho's signature
        self.connected = False

    def _publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)
        self.published += 1

    def status(self) -> dict[str, Any]:
        """Connected or not, and how many messages were published."""
        return {"connected": self.connected, "published": self.published, "node": self.node}

    # -- discovery ---------------------------------------------------------------------------

    def _device(self) -> dict[str, Any]:
        from rap_edge import __version__

        return {
            "identifiers": [f"rap_edge_{self.node}"],
            "name": f"rap-edge {self.node}",
            "manufacturer": "rap-edge",
            "model": "rap-edge serve",
            "sw_version": __version__,
        }

    def presence_topic(self, concept_id: str, camera: str) -> str:
        """Where a person's presence on a camera is published."""
        return f"{self.base}/presence/{topic_safe(concept_id)}/{topic_safe(camera)}"

    def discovery_topic(self, concept_id: str, camera: str) -> str:
        """The Home Assistant discovery topic of a person's presence on a camera."""
        obj = f"{topic_safe(concept_id)}_{topic_safe(camera)}"
        return f"{self.prefix}/binary_sensor/{self.node}/{obj}/config"

    def _announce_person(self, concept_id: str, name: str, camera: str) -> None:
        obj = f"{topic_safe(concept_id)}_{topic_safe(camera)}"
        config = {
            "name": f"{name} on {camera}",
            "unique_id": f"rap_edge_{self.node}_{obj}",
            "object_id": f"rap_edge_{topic_safe(name)}_{topic_safe(camera)}",
            "state_topic": self.presence_topic(concept_id, camera),
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "occupancy",
            "availability_topic": self.status_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "json_attributes_topic": f"{self.base}/attributes/{topic_safe(concept_id)}",
            "device": self._device(),
        }
        self._publish(self.discovery_topic(concept_id, camera), json.dumps(config), retain=True)
        attrs = {"concept_id": concept_id, "name": name}
        self._publish(
            f"{self.base}/attributes/{topic_safe(concept_id)}", json.dumps(attrs), retain=True
        )

    def _announce_camera(self, camera: str) -> None:
        cam = topic_safe(camera)
        config = {
            "name": f"{camera} last recognition",
            "unique_id": f"rap_edge_{self.node}_{cam}_snapshot",
            "topic": f"{self.base}/snapshot/{cam}",
            "availability_topic": self.status_topic,
            "device": self._device(),
        }
        self._publish(
            f"{self.prefix}/camera/{self.node}/{cam}/config", json.dumps(config), retain=True
        )

    # -- what the runtime sees ---------------------------------------------------------------

    def observe(self, camera: str, result: FrameResult, image: Any) -> None:  # noqa: ANN401
        """One processed frame (on the processing thread: returns at once)."""
        now = time.time()
        appeared = []
        with self._lock:
            if camera not in self._cameras:
                self._cameras.add(camera)
                self._jobs.put(("camera", camera))
            for r in result.recognitions:
                if r.decision != "known" or r.concept_id is None:
                    continue
                key = (r.concept_id, camera)
                if key not in self._seen:
                    appeared.append(r)
                self._seen[key] = now
                self._names[r.concept_id] = r.name or r.concept_id
        for r in appeared:
            self._jobs.put(("appeared", (camera, r, result, image, now)))

    def forget(self, concept: Concept) -> None:
        """Remove a forgotten concept's presence and Home Assistant entities."""
        self._jobs.put(("forget", concept.id))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            kind, arg = job
            try:
                if kind == "camera":
                    self._announce_camera(arg)
                elif kind == "appeared":
                    self._appeared(*arg)
                elif kind == "off":
                    self._publish(self.presence_topic(*arg), "OFF", retain=True)
                elif kind == "forget":
                    self._forgotten(arg)
            except Exception:  # the bridge must outlive one bad message
                log.exception("MQTT: %s failed", kind)

    def _appeared(
        self,
        camera: str,
        r: Recognition,
        result: FrameResult,
        image: npt.NDArray[np.uint8],
        when: float,
    ) -> None:
        import cv2

        from rap_edge.pipeline import annotate

        cid = r.concept_id or ""
        if (cid, camera) not in self._announced:
            self._announce_person(cid, r.name or cid, camera)
            self._announced.add((cid, camera))
        self._publish(self.presence_topic(cid, camera), "ON", retain=True)
        snap_topic = f"{self.base}/snapshot/{topic_safe(camera)}"
        ok, buf = cv2.imencode(
            ".jpg", annotate(image, result, None), [cv2.IMWRITE_JPEG_QUALITY, 80]
        )
        if ok:
            self._publish(snap_topic, buf.tobytes(), retain=True)
        event = {
            "type": "recognised",
            "concept_id": r.concept_id,
            "name": r.name,
            "camera": camera,
            "score": None if r.score is None else round(float(r.score), 4),
            "box": [round(float(v), 1) for v in r.box],
            "time": when,
            "snapshot_topic": snap_topic if ok else None,
        }
        self._publish(f"{self.base}/events", json.dumps(event))

    def _forgotten(self, concept_id: str) -> None:
        with self._lock:
            keys = [k for k in self._seen if k[0] == concept_id]
            for k in keys:
                self._seen.pop(k, None)
            cameras = set(self._cameras)
            self._names.pop(concept_id, None)
        for cam in cameras:
            self._publish(self.presence_topic(concept_id, cam), "", retain=True)
            self._publish(self.discovery_topic(concept_id, cam), "", retain=True)
            self._announced.discard((concept_id, cam))
        self._publish(f"{self.base}/attributes/{topic_safe(concept_id)}", "", retain=True)

    def _tick(self) -> None:
        while not self._stop.wait(min(1.0, self.expire_s / 4)):
            self.expire()

    def expire(self, now: float | None = None) -> int:
        """Turn off the presence of people unseen for ``expire_s``; returns how many."""
        now = time.time() if now is None else now
        with self._lock:
            gone = [k for k, t in self._seen.items() if now - t > self.expire_s]
            for k in gone:
                del self._seen[k]
        for k in gone:
            self._jobs.put(("off", k))
        return len(gone)

    def close(self) -> None:
        """Publish ``offline`` and disconnect."""
        self._stop.set()
        self._jobs.put(None)
        self._worker.join(5.0)
        if self.connected:
            info = self.client.publish(self.status_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()
