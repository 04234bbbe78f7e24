"""Logins, CSRF and cross-site requests, the instance lock and the password file (no models)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from rap_edge.cli import main
from rap_edge.errors import InvalidInputError, MemoryLockedError
from rap_edge.web import InstanceLock, WebConfig, set_password, verify_password
from rap_edge.web._app import SESSION_COOKIE, create_app

if TYPE_CHECKING:
    from pathlib import Path


class _Runtime:
    """Just enough of a live runtime for the guards' tests (no models)."""

    def list_concepts(self, category: str = "") -> list[object]:  # noqa: ARG002
        return []


class _State:
    cameras: list[object] = []  # noqa: RUF012
    clusters = None
    sightings = None
    runtime = _Runtime()

    def health(self) -> dict[str, bool]:
        return {"ok": True}


def _client(tmp_path: Path, *, auth: bool):
    from fastapi.testclient import TestClient

    cfg = WebConfig(memory=tmp_path, auth=auth)
    return TestClient(create_app(_State(), cfg)), cfg  # type: ignore[arg-type]


def test_password_is_stored_salted_and_hashed(tmp_path: Path) -> None:
    path = set_password(tmp_path, "correct horse")
    text = path.read_text()
    assert "correct horse" not in text and '"scrypt"' in text
    assert path.stat().st_mode & 0o777 == 0o600
    first_hash = text
    set_password(tmp_path, "correct horse")
    assert path.read_text() != first_hash  # a new salt each time
    assert verify_password(tmp_path, "correct horse")
    assert not verify_password(tmp_path, "wrong horse")
    with pytest.raises(InvalidInputError, match="at least 8 characters"):
        set_password(tmp_path, "short")


def test_beyond_localhost_everything_needs_the_password(tmp_path: Path) -> None:
    set_password(tmp_path, "correct horse")
    client, _ = _client(tmp_path, auth=True)
    assert client.get("/people", follow_redirects=False).headers["location"] == "/login"
    res = client.get("/api/concepts")
    assert res.status_code == 401 and "log in first" in res.json()["error"]
    bad = client.get("/api/concepts", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    good = client.get("/api/concepts", headers={"Authorization": "Bearer correct horse"})
    assert good.status_code == 200 and good.json() == []
    assert client.get("/api/health").status_code != 401
    res = client.post("/login", data={"password": "correct horse"}, follow_redirects=False)
    assert res.status_code == 303 and SESSION_COOKIE in res.cookies
    assert client.get("/people").status_code == 200


def test_logins_are_rate_limited(tmp_path: Path) -> None:
    set_password(tmp_path, "correct horse")
    client, cfg = _client(tmp_path, auth=True)
    for _ in range(cfg.limiter.attempts):
        assert client.post("/login", data={"password": "guess"}).status_code == 401
    res = client.post("/login", data={"password": "correct horse"})
    assert res.status_code == 429
    assert int(res.headers["retry-after"]) > 0
    assert "too many wrong passwords" in res.text


def test_forms_need_the_csrf_token_and_cross_site_posts_are_refused(tmp_path: Path) -> None:
    client, _ = _client(tmp_path, auth=False)
    page = client.get("/people")
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    res = client.post("/logout", data={"csrf_token": "forged"})
    assert res.status_code == 400 and "expired" in res.text
    res = client.post("/logout", data={"csrf_token": token[1]}, follow_redirects=False)
    assert res.status_code == 303
    # A browser on another site: refused whatever it carries.
    res = client.post("/api/concepts", headers={"Origin": "http://evil.example"})
    assert res.status_code == 403
    res = client.post("/api/concepts", headers={"Sec-Fetch-Site": "cross-site"})
    assert res.status_code == 403
    # A cookie session's API calls need the token in a header.
    client.get("/people")
    res = client.delete("/api/concepts/x")
    assert res.status_code == 403 and "X-CSRF-Token" in res.json()["error"]


def test_a_second_serve_on_the_same_memory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rap_edge.memory import Memory

    Memory.init(tmp_path / "mem").close()
    lock = InstanceLock(tmp_path / "mem")
    lock.acquire()
    try:
        with pytest.raises(MemoryLockedError, match=r"already serving the memory"):
            InstanceLock(tmp_path / "mem").acquire()
        assert main(["serve", "--memory", str(tmp_path / "mem")]) == 2
        assert "another `rap-edge serve` (pid" in capsys.readouterr().err
    finally:
        lock.release()
    assert main(["serve", "--memory", str(tmp_path / "mem"), "--host", "0.0.0.0"]) == 1  # noqa: S104
    assert "needs a password" in capsys.readouterr().err


def test_a_chunked_upload_without_a_size_is_refused_before_it_is_read(tmp_path: Path) -> None:
    client, _ = _client(tmp_path, auth=False)
    sent = []

    def body():  # 64 MB if it were all read; the guard answers before reading any of it
        for _ in range(1024):
            sent.append(1)
            yield b"\0" * 65536

    res = client.post(
        "/api/recognise", content=body(), headers={"content-type": "application/octet-stream"}
    )
    assert res.status_code == 411
    assert "chunked bodies are refused" in res.json()["error"]
    assert len(sent) < 1024
