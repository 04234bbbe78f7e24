"""MQTT against a real mosquitto on 127.0.0.1: presence, events, snapshots, HA discovery."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rap_edge.interfaces import Concept
from rap_edge.pipeline import FrameResult, Recognition

pytest.importorskip("paho.mqtt")

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """A private mosquitto on 127.0.0.1 (random port), stopped after the test."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (Debian package mosquitto; `make test` adds it)")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


class Subscriber:
    """Collects every message on ``#`` and ``homeassistant/#``."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{id(self)}")

        def on_connect(client: mqtt.Client, *_: object) -> None:
            client.subscribe([("rap_edge/#", 1), ("homeassistant/#", 1)])

        def on_subscribe(*_: object) -> None:
            ready.set()

        def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
            with self.cond:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
                self.cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "the test subscriber did not subscribe"

    def wait(self, topic: str, payload: bytes | None = None, timeout: float = 10.0) -> bytes:
        """The first message on ``topic`` (with ``payload`` when given)."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, p, _ in self.messages:
                    if t == topic and (payload is None or p == payload):
                        return p
                left = end - time.monotonic()
                assert left > 0, f"no {payload!r} on {topic}; got {[m[0] for m in self.messages]}"
                self.cond.wait(left)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _frame(concept_id: str, name: str) -> FrameResult:
    rec = Recognition(
        box=(10.0, 10.0, 60.0, 70.0),
        kind="face",
        detector_score=0.99,
        track_id=1,
        decision="known",
        concept_id=concept_id,
        name=name,
        score=0.97,
    )
    return FrameResult(index=0, timestamp=time.time(), width=120, height=100, recognitions=[rec])


def test_presence_events_snapshot_and_discovery(broker: int) -> None:
    from rap_edge.web._mqtt import MqttBridge

    sub = Subscriber(broker)
    bridge = MqttBridge("127.0.0.1", broker, node="home", expire_s=0.5)
    try:
        sub.wait("rap_edge/home/status", b"online")
        image = np.full((100, 120, 3), 128, np.uint8)
        bridge.observe("Front Door", _frame("c_0123456789ab", "Bo"), image)
        presence = "rap_edge/home/presence/c_0123456789ab/front_door"
        sub.wait(presence, b"ON")
        config = json.loads(
            sub.wait("homeassistant/binary_sensor/home/c_0123456789ab_front_door/config")
        )
        assert config["state_topic"] == presence
        assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")
        assert config["device_class"] == "occupancy"
        assert config["availability_topic"] == "rap_edge/home/status"
        assert config["name"] == "Bo on Front Door"
        assert config["unique_id"] == "rap_edge_home_c_0123456789ab_front_door"
        assert config["device"]["identifiers"] == ["rap_edge_home"]
        cam = json.loads(sub.wait("homeassistant/camera/home/front_door/config"))
        assert cam["topic"] == "rap_edge/home/snapshot/front_door"
        event = json.loads(sub.wait("rap_edge/home/events"))
        assert event["type"] == "recognised"
        assert (event["name"], event["camera"], event["score"]) == ("Bo", "Front Door", 0.97)
        snapshot = sub.wait("rap_edge/home/snapshot/front_door")
        assert snapshot[:3] == b"\xff\xd8\xff"
        retained = {t for t, _, r in sub.messages if r}
        assert not retained  # live messages arrive unretained to a subscriber already there
        # Unseen for longer than expire_s: OFF, retained by the broker.
        sub.wait(presence, b"OFF", timeout=10)
        late = Subscriber(broker)
        try:
            assert late.wait(presence) == b"OFF"
            assert any(t == presence and r for t, _, r in late.messages)
        finally:
            late.close()
        # Forgetting the concept removes its entity (empty retained config).
        concept = Concept("c_0123456789ab", "Bo", (), "person", "", 0.0, 0.0, ())
        bridge.forget(concept)
        sub.wait("homeassistant/binary_sensor/home/c_0123456789ab_front_door/config", b"")
    finally:
        bridge.close()
    sub.wait("rap_edge/home/status", b"offline")
    sub.close()
