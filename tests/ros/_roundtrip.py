"""Two ROS 2 processes exchange rap_edge_msgs over Fast DDS; run ONLY via scripts/netns_run.sh.

``python tests/ros/_roundtrip.py`` (the client) starts ``... _roundtrip.py server`` as a second
process, so the two participants discover each other over UDP on lo, then:

1. calls ``ListConcepts`` (all, then filtered by category);
2. calls ``AddConcept`` with a ``sensor_msgs/Image`` made by ``rap_edge_ros.convert``, which the
   server decodes with the same module (the image's checksum comes back in ``message``);
3. waits until the server's sensor-data subscription matches, then publishes a
   ``RecognitionArray`` until the server reports it (it prints the received fields as JSON).

The client prints one JSON line with everything it saw and exits 0 when every check passed.
Each wait is bounded; nodes are destroyed only after their executor is shut down.
"""

from __future__ import annotations

import array
import json
import math
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rap_edge_msgs.msg import (
    ConceptHit,
    ConceptSummary,
    Description,
    Recognition,
    RecognitionArray,
)
from rap_edge_msgs.srv import AddConcept, Ask, ListConcepts, RemoveConcept, UpdateConcept
from rap_edge_ros.convert import bgr_to_image_fields, image_to_bgr
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

TOPIC = "/rap_edge_test/recognitions"
LIST = "/rap_edge_test/list_concepts"
ADD = "/rap_edge_test/add_concept"
SERVER_DEADLINE_S = 40.0
STEP_TIMEOUT_S = 15.0
CONCEPTS = [
    ("c_000000000001", "Bo", "dog", ["<bo>"], 3),
    ("c_000000000002", "Anna", "person", [], 5),
]


def summary(cid: str, name: str, category: str, aliases: list[str], count: int) -> Any:
    return ConceptSummary(
        id=cid,
        name=name,
        category=category,
        info=f"{name}'s info",
        aliases=aliases,
        image_count=count,
    )


def image() -> Image:
    bgr = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    fields = bgr_to_image_fields(bgr)
    msg = Image(
        encoding=fields["encoding"],
        height=fields["height"],
        width=fields["width"],
        step=fields["step"],
        is_bigendian=fields["is_bigendian"],
    )
    msg.data = array.array("B", fields["data"])
    return msg


def recognitions() -> RecognitionArray:
    msg = RecognitionArray(
        source_topic="/camera/image_raw",
        timing_names=["detect", "embed", "total"],
        timing_ms=[1.5, 2.5, 4.0],
    )
    msg.header.stamp.sec = 1234
    msg.header.stamp.nanosec = 5678
    msg.header.frame_id = "camera_optical"
    known = Recognition(
        box=[1.0, 2.0, 30.5, 40.25],
        landmarks=[5.0, 6.0, 7.0, 8.0],
        kind=Recognition.KIND_FACE,
        track_id=7,
        decision=Recognition.DECISION_KNOWN,
        concept_id="c_000000000002",
        name="Anna",
        score=0.75,
        candidates=[
            ConceptHit(concept_id="c_000000000002", name="Anna", score=0.75),
            ConceptHit(concept_id="c_000000000001", name="Bo", score=0.25),
        ],
    )
    unknown = Recognition(
        box=[0.0, 0.0, 10.0, 10.0],
        kind=Recognition.KIND_OBJECT,
        track_id=8,
        decision=Recognition.DECISION_UNKNOWN,
        score=math.nan,
    )
    msg.recognitions = [known, unknown]
    return msg


def described(msg: RecognitionArray) -> dict[str, Any]:
    def score(v: float) -> float | str:
        return "nan" if math.isnan(v) else round(v, 4)

    return {
        "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
        "frame_id": msg.header.frame_id,
        "source_topic": msg.source_topic,
        "timings": dict(
            zip(msg.timing_names, [round(float(v), 3) for v in msg.timing_ms], strict=True)
        ),
        "recognitions": [
            {
                "box": [round(float(v), 3) for v in r.box],
                "landmarks": [round(float(v), 3) for v in r.landmarks],
                "kind": r.kind,
                "track_id": r.track_id,
                "decision": r.decision,
                "concept_id": r.concept_id,
                "name": r.name,
                "score": score(r.score),
                "candidates": [[c.concept_id, c.name, score(c.score)] for c in r.candidates],
            }
            for r in msg.recognitions
        ],
    }


def check_types() -> dict[str, Any]:
    """Every interface is generated: construct each, read the constants."""
    for cls in (ConceptHit, ConceptSummary, Description, Recognition, RecognitionArray):
        cls()
    for srv in (AddConcept, Ask, ListConcepts, RemoveConcept, UpdateConcept):
        srv.Request()
        srv.Response()
    d = Description(
        text="Anna is here.",
        backend="template",
        regenerated=False,
        fell_back=True,
        first_token_ms=math.nan,
        total_ms=3.0,
    )
    return {
        "kinds": [Recognition.KIND_FACE, Recognition.KIND_OBJECT],
        "decisions": [
            Recognition.DECISION_KNOWN,
            Recognition.DECISION_UNKNOWN,
            Recognition.DECISION_UNCERTAIN,
        ],
        "description_fell_back": d.fell_back,
        "ask_has_image_field": hasattr(Ask.Request(), "image"),
    }


def udp_local_addresses() -> list[str]:
    """Local addresses of this process's network namespace's UDP sockets (/proc/net/udp)."""
    found = set()
    with open("/proc/self/net/udp") as f:
        for line in list(f)[1:]:
            hex_ip = line.split()[1].split(":")[0]
            found.add(".".join(str(int(hex_ip[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return sorted(found)


def serve() -> int:
    """The server process: services and a subscription; prints what it received."""
    rclpy.init()
    node = Node("rap_edge_test_server")
    received = threading.Event()

    def list_concepts(req: Any, resp: Any) -> Any:
        resp.concepts = [summary(*c) for c in CONCEPTS if not req.category or c[2] == req.category]
        return resp

    def add_concept(req: Any, resp: Any) -> Any:
        try:
            sums = [
                int(
                    image_to_bgr(
                        i.encoding, i.height, i.width, i.step, i.is_bigendian, i.data
                    ).sum()
                )
                for i in req.images
            ]
        except ValueError as err:
            resp.success, resp.message = False, str(err)
            return resp
        resp.success = True
        resp.message = json.dumps({"checksums": sums})
        resp.concept = summary(
            "c_000000000003", req.name, req.category, list(req.aliases), len(req.images)
        )
        return resp

    def on_recognitions(msg: RecognitionArray) -> None:
        if not received.is_set():
            print(json.dumps({"received": described(msg)}), flush=True)
            received.set()

    node.create_service(ListConcepts, LIST, list_concepts)
    node.create_service(AddConcept, ADD, add_concept)
    node.create_subscription(RecognitionArray, TOPIC, on_recognitions, qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + SERVER_DEADLINE_S
    try:
        while not received.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        # Let the last service response go out before the participant disappears.
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        rclpy.try_shutdown()
        node.destroy_node()
    return 0 if received.is_set() else 3


def call(client: Any, request: Any) -> Any:
    if not client.wait_for_service(timeout_sec=STEP_TIMEOUT_S):
        msg = f"service {client.srv_name} not discovered in {STEP_TIMEOUT_S} s"
        raise TimeoutError(msg)
    done = threading.Event()
    future = client.call_async(request)
    future.add_done_callback(lambda _: done.set())
    if not done.wait(STEP_TIMEOUT_S):
        msg = f"no response from {client.srv_name} in {STEP_TIMEOUT_S} s"
        raise TimeoutError(msg)
    return future.result()


def client_main() -> int:
    result: dict[str, Any] = {"types": check_types()}
    server = subprocess.Popen(
        [sys.executable, __file__, "server"], stdout=subprocess.PIPE, text=True
    )
    server_lines: list[str] = []
    reader = threading.Thread(target=lambda: server_lines.extend(server.stdout or ()), daemon=True)
    reader.start()
    rclpy.init()
    node = Node("rap_edge_test_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    ok = False
    try:
        t0 = time.monotonic()
        lister = node.create_client(ListConcepts, LIST)
        all_ = call(lister, ListConcepts.Request())
        result["discovery_and_list_s"] = round(time.monotonic() - t0, 3)
        dogs = call(lister, ListConcepts.Request(category="dog"))
        result["list_all"] = [
            [c.id, c.name, c.category, list(c.aliases), c.image_count] for c in all_.concepts
        ]
        result["list_dog"] = [c.name for c in dogs.concepts]

        adder = node.create_client(AddConcept, ADD)
        img = image()
        added = call(
            adder,
            AddConcept.Request(
                name="Rex", category="dog", info="x", aliases=["<rex>"], images=[img, img]
            ),
        )
        result["add"] = {
            "success": added.success,
            "message": added.message,
            "name": added.concept.name,
            "image_count": added.concept.image_count,
        }
        result["expected_checksum"] = int(np.arange(72).sum())

        pub = node.create_publisher(RecognitionArray, TOPIC, qos_profile_sensor_data)
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        result["matched"] = pub.get_subscription_count()
        sent = 0
        while time.monotonic() < deadline and not any("received" in x for x in server_lines):
            pub.publish(recognitions())
            sent += 1
            time.sleep(0.2)
        result["published"] = sent
        result["udp_local_addresses"] = udp_local_addresses()
        ok = True
    except TimeoutError as err:
        result["error"] = str(err)
    finally:
        executor.shutdown()
        rclpy.try_shutdown()
        spinner.join(timeout=5)
        node.destroy_node()
    try:
        server.wait(timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    reader.join(timeout=5)
    result["server_exit"] = server.returncode
    got = [json.loads(x)["received"] for x in server_lines if x.startswith('{"received"')]
    result["received"] = got[0] if got else None
    result["expected"] = described(recognitions())
    print(json.dumps(result), flush=True)
    good = (
        ok
        and server.returncode == 0
        and result["received"] == result["expected"]
        and result["add"]["success"]
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["server"] else client_main())
