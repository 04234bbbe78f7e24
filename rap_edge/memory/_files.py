"""The content-addressed image store: ``images/ab/<sha256>.<ext>`` in the memory folder."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable
    from pathlib import Path

    from rap_edge.memory._validate import CheckedImage

__all__ = ["ImageStore"]


class ImageStore:
    """Reference image files, named by the SHA-256 of their bytes (one copy per picture).

    A file is shared by every ``images`` row with its hash, so it is deleted only once no row
    refers to it.

    Attributes:
        folder: The ``images`` folder of a memory.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, sha256: str, ext: str) -> Path:
        """Where the file with this hash and extension lives."""
        return self.folder / sha256[:2] / f"{sha256}.{ext}"

    def files(self) -> list[Path]:
        """Every stored file, sorted (referenced or not)."""
        return sorted(self.folder.glob("*/*"))

    def store(self, image: CheckedImage) -> Path | None:
        """Copy an image in (atomically, owner-only); return its path if it was not there."""
        dest = self.path(image.sha256, image.ext)
        if dest.exists():
            return None
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(image.data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except BaseException:
            # A full disk: leave no half-written copy behind.
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return dest

    def delete_unreferenced(
        self, conn: sqlite3.Connection, files: Iterable[tuple[str, str]]
    ) -> None:
        """Delete those (sha256, ext) files that no row of ``images`` refers to any more."""
        for sha, ext in files:
            if conn.execute("SELECT 1 FROM images WHERE sha256 = ?", (sha,)).fetchone() is None:
                with contextlib.suppress(FileNotFoundError):
                    self.path(sha, ext).unlink()

    def delete_orphans(self, conn: sqlite3.Connection) -> int:
        """Delete every stored file that no row of ``images`` refers to; return how many."""
        referenced = {
            self.path(str(r[0]), str(r[1])) for r in conn.execute("SELECT sha256, ext FROM images")
        }
        removed = 0
        for path in self.files():
            if path not in referenced:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
