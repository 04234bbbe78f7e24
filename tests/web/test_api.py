"""The REST API on real photos: enroll, recognise, refuse bad uploads, errors, sightings."""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from tests.web.conftest import Web, photo_folder, side_by_side

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.network


def _enroll(web: Web, name: str = "Barack", photo: str = "obama.jpg") -> dict[str, object]:
    res = web.client.post(
        "/api/concepts",
        data={"name": name, "category": "person", "info": "likes basketball"},
        files=[("photos", web.upload(photo))],
    )
    assert res.status_code == 201, res.text
    body: dict[str, object] = res.json()
    return body


def test_enroll_from_upload_then_recognise(web: Web) -> None:
    concept = _enroll(web)
    images = concept["images"]
    assert isinstance(images, list) and len(images) == 1
    face = web.client.get(images[0]["face_url"])
    assert face.status_code == 200 and face.headers["content-type"] == "image/jpeg"
    crop = cv2.imdecode(np.frombuffer(face.content, np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None and 0 < crop.shape[0] <= 320

    res = web.client.post("/api/recognise", files={"photo": web.upload("obama2.jpg")})
    assert res.status_code == 200, res.text
    (rec,) = res.json()["recognitions"]
    assert (rec["decision"], rec["name"]) == ("known", "Barack")

    res = web.client.post("/api/recognise", files={"photo": web.upload("biden.jpg")})
    assert [r["decision"] for r in res.json()["recognitions"]] == ["unknown"]

    listed = web.client.get("/api/concepts").json()
    assert [c["name"] for c in listed] == ["Barack"]
    assert web.client.get(f"/api/concepts/{concept['id']}").json()["info"] == "likes basketball"


def test_refused_uploads_say_why_and_change_nothing(web: Web) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", noise)
    assert ok
    res = web.client.post(
        "/api/concepts", data={"name": "Nobody"}, files=[("photos", ("n.png", buf.tobytes()))]
    )
    assert res.status_code == 400
    assert res.json() == {
        "error": "photo #1: no face found; use a photo where Nobody's face is clear and not too "
        "small (nothing was changed)",
        "type": "InvalidInputError",
        "exit_code": 1,
    }
    two = side_by_side(web.photos["obama.jpg"], web.photos["biden.jpg"])
    res = web.client.post(
        "/api/concepts", data={"name": "Both"}, files=[("photos", ("two.jpg", two))]
    )
    assert res.status_code == 400
    assert res.json()["error"].startswith("photo #1: 2 faces found")
    assert web.client.get("/api/concepts").json() == []


def test_errors_are_json_with_the_cli_messages(web: Web) -> None:
    res = web.client.get("/api/concepts/nobody")
    assert res.status_code == 404
    assert res.json()["exit_code"] == 1 and "nobody" in res.json()["error"]
    _enroll(web)
    res = web.client.post(
        "/api/concepts", data={"name": "barack"}, files=[("photos", web.upload("obama2.jpg"))]
    )
    assert res.status_code == 409, res.text
    assert res.json()["type"] == "ConflictError"
    res = web.client.patch("/api/concepts/Barack", json={"name": ""})
    assert res.status_code == 400 and res.json()["exit_code"] == 1


def test_type_is_sniffed_from_the_content_not_the_name(web: Web) -> None:
    res = web.client.post(
        "/api/recognise", files={"photo": ("face.jpg", b"GIF89a not really", "image/jpeg")}
    )
    assert res.status_code == 400
    assert "not a JPEG, PNG or WebP image" in res.json()["error"]
    truncated = web.photos["obama.jpg"].read_bytes()[:2000]
    res = web.client.post("/api/recognise", files={"photo": ("t.jpg", truncated)})
    assert res.status_code == 400
    # A real PNG under a misleading name and type is accepted: the bytes decide.
    ok, png = cv2.imencode(".png", cv2.imread(str(web.photos["obama2.jpg"])))
    assert ok
    res = web.client.post(
        "/api/recognise", files={"photo": ("x.gif", png.tobytes(), "text/plain")}
    )
    assert res.status_code == 200, res.text


def test_decompression_bomb_is_refused_before_decoding(web: Web) -> None:
    ok, bomb = cv2.imencode(".png", np.zeros((8000, 8000), np.uint8))  # 64 MP in ~70 kB
    assert ok and len(bomb) < 200_000
    res = web.client.post("/api/recognise", files={"photo": ("small.png", bomb.tobytes())})
    assert res.status_code == 400
    assert res.json()["error"] == ("photo #1 is 8000x8000 pixels (64 MP); the limit is 50 MP")

    # A header that claims 100000 x 100000 over a few bytes of data.
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    fake = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    res = web.client.post("/api/recognise", files={"photo": ("a.png", fake)})
    assert res.status_code == 400
    assert "100000x100000 pixels" in res.json()["error"]


def test_oversized_upload_is_refused(web: Web) -> None:
    big = cv2.imread(str(web.photos["obama.jpg"]))
    big = cv2.resize(big, (3000, 3000))
    noisy = big.astype(np.int16) + np.random.default_rng(1).integers(-40, 40, big.shape)
    ok, data = cv2.imencode(
        ".jpg", noisy.clip(0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 98]
    )
    assert ok and len(data) > web.config.max_upload_bytes
    res = web.client.post("/api/recognise", files={"photo": ("big.jpg", data.tobytes())})
    assert res.status_code == 400
    assert res.json()["error"].endswith("the limit is 2 MB")
    web.config.max_body_bytes = 1_000_000  # the whole request, refused before it is read
    res = web.client.post("/api/recognise", files={"photo": ("big.jpg", data.tobytes())})
    assert res.status_code == 413
    assert "larger than 1.0 MB" in res.json()["error"]


def test_path_traversal_never_reaches_a_file(web: Web, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    concept = _enroll(web, name="../../secret", photo="obama.jpg")
    assert concept["name"] == "../../secret"  # a name, never a path
    for url in (
        "/api/images/..%2F..%2Fsecret.txt",
        "/api/images/../../secret.txt",
        f"/api/images/{secret}",
        "/api/clusters/..%2F..%2F/crops/0",
        "/api/clusters/../crops/0",
        "/static/..%2F..%2F..%2Fsecret.txt",
        "/static/../_auth.py",
    ):
        res = web.client.get(url)
        assert res.status_code in {404, 422}, (url, res.status_code)
        assert b"top secret" not in res.content and b"def " not in res.content
    # An uploaded file's name is ignored: nothing is written where it points. (The page
    # requests above gave this client a session cookie: drop it, or it needs X-CSRF-Token.)
    web.client.cookies.clear()
    res = web.client.post(
        "/api/concepts",
        data={"name": "Joe"},
        files=[("photos", ("../../../evil.jpg", web.photos["biden.jpg"].read_bytes()))],
    )
    assert res.status_code == 201
    assert not list(tmp_path.rglob("evil.jpg"))
    (image,) = res.json()["images"]
    served = web.client.get(image["url"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"


def test_live_source_sightings_and_last_seen_question(web: Web, tmp_path: Path) -> None:
    concept = _enroll(web)
    cam = web.state.add_source(str(photo_folder(tmp_path, web.photos, ["obama2.jpg"])))
    deadline_seq = web.state.wait_frame(cam, 0, 60.0)
    assert deadline_seq > 0, web.state.health()
    seen = cam.seq
    while "Barack" not in cam.names:  # the first frames may come before the edit settles
        seen = web.state.wait_frame(cam, seen, 30.0)
        assert seen > 0
    res = web.client.post("/api/ask", data={"question": "When did you last see Barack?"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["source"] == "sightings"
    assert body["answer"].startswith(f"I last saw Barack on {cam.name} at ")
    rows = web.client.get("/api/sightings", params={"concept": "Barack"}).json()
    assert rows and rows[0]["camera"] == cam.name and rows[0]["concept_id"] == concept["id"]

    res = web.client.post("/api/ask", data={"question": "Who is here?", "camera": "0"})
    assert res.status_code == 200, res.text
    assert "Barack" in res.json()["answer"]
    live = web.client.get("/api/live").json()
    assert live[0]["names"] == ["Barack"]
    frame = web.client.get("/api/cameras/0/frame.jpg")
    assert frame.status_code == 200 and frame.content[:3] == b"\xff\xd8\xff"
    health = web.client.get("/api/health").json()
    assert health["concepts"] == 1 and health["cameras"][0]["processed"] >= 1

    # Forgetting the concept forgets its sightings.
    assert web.client.delete("/api/concepts/Barack").status_code == 200
    assert web.state.sightings is not None
    assert web.state.sightings.recent(str(concept["id"])) == []
    assert web.client.get("/api/sightings", params={"concept": "Barack"}).status_code == 404
    res = web.client.post("/api/ask", data={"question": "When did you last see Barack?"})
    assert res.json()["source"] != "sightings"


def test_concept_images_add_and_remove(web: Web) -> None:
    concept = _enroll(web)
    res = web.client.post(
        f"/api/concepts/{concept['id']}/images", files=[("photos", web.upload("obama3.jpg"))]
    )
    assert res.status_code == 201, res.text
    images = res.json()["images"]
    assert len(images) == 2
    res = web.client.delete(f"/api/concepts/{concept['id']}/images/{images[0]['id']}")
    assert res.status_code == 200 and len(res.json()["images"]) == 1
    res = web.client.delete(f"/api/concepts/{concept['id']}/images/{images[1]['id']}")
    assert res.status_code == 400 and "only photo" in res.json()["error"]
    assert web.client.get(f"/api/images/{images[0]['id']}").status_code == 404
    res = web.client.patch(f"/api/concepts/{concept['id']}", json={"aliases": ["Barry"]})
    assert res.json()["aliases"] == ["Barry"]


def test_openapi_documents_the_api(web: Web) -> None:
    spec = web.client.get("/api/openapi.json").json()
    paths = set(spec["paths"])
    for path in (
        "/api/concepts",
        "/api/concepts/{ref}",
        "/api/concepts/{ref}/images",
        "/api/images/{image_id}",
        "/api/recognise",
        "/api/ask",
        "/api/clusters",
        "/api/sightings",
        "/api/health",
    ):
        assert path in paths
    assert not any(p.startswith("/people") for p in paths)
