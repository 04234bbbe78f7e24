"""Strangers: unknown-face clusters shared by the live runtime's thread and every front end.

:class:`LiveClusters` is the pipeline's :class:`~rap_edge.pipeline.UnknownClusters` with one
lock around every method (the processing thread assigns faces and offers crops while a web
request or a ROS service names, merges or dismisses a cluster), plus merge, dismiss, retention
(crops older than ``retention_days`` are deleted) and a storage cap (past ``max_bytes`` of
crops, the oldest crops are deleted first). :meth:`rap_edge.app.Session.strangers` opens the
memory's own (``<memory>/unknown``).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.errors import ConceptNotFoundError, InvalidInputError
from rap_edge.pipeline import UnknownClusters

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

    from rap_edge.pipeline import Cluster

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_MB", "DEFAULT_RETENTION_DAYS", "LiveClusters"]

DEFAULT_RETENTION_DAYS = 14.0
DEFAULT_MAX_MB = 200.0


def _crop_time(name: str) -> float | None:
    """A crop file's write time from its name (``<time_ns>-<seq>.jpg``)."""
    head = name.split("-", 1)[0]
    return int(head) / 1e9 if head.isdigit() else None


def _crop_order(name: str) -> tuple[int, int]:
    """Oldest first: (write time in ns, sequence number) from ``<time_ns>-<seq>.jpg``."""
    head, _, tail = name.removesuffix(".jpg").partition("-")
    return (int(head) if head.isdigit() else 0, int(tail) if tail.isdigit() else 0)


class LiveClusters(UnknownClusters):
    """Thread-safe unknown-face clusters with merge, dismiss and retention."""

    def __init__(
        self,
        folder: str | Path | None,
        *,
        threshold: float,
        max_crops: int = 5,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        max_bytes: int = int(DEFAULT_MAX_MB * 1e6),
    ) -> None:
        """Open the clusters in ``folder`` (see :class:`UnknownClusters`).

        Raises:
            InvalidInputError: a retention or cap that is not a positive number.
        """
        if not (0 < float(retention_days) < float("inf")):
            msg = f"strangers: retention must be a positive number of days, got {retention_days!r}"
            raise InvalidInputError(msg)
        if not (isinstance(max_bytes, int) and max_bytes > 0):
            msg = (
                f"strangers: the storage cap must be a positive number of bytes, got {max_bytes!r}"
            )
            raise InvalidInputError(msg)
        self.lock = threading.RLock()
        super().__init__(folder, threshold=threshold, max_crops=max_crops)
        self.retention_days = float(retention_days)
        self.max_bytes = max_bytes
        # The bytes counted at the last trim plus every crop written since (an over-estimate:
        # replaced crops are not subtracted); past the cap, the crops are counted exactly and
        # the oldest deleted.
        self._written = self.used_bytes()

    def assign(self, embedding: npt.NDArray[np.float32], *, cluster: str | None = None) -> str:
        """See :meth:`UnknownClusters.assign`."""
        with self.lock:
            return super().assign(embedding, cluster=cluster)

    def offer_crop(
        self, cluster: str, crop: npt.NDArray[np.uint8], quality: float, source: str = ""
    ) -> bool:
        """See :meth:`UnknownClusters.offer_crop` (a dismissed cluster's crop is dropped)."""
        with self.lock:
            if cluster not in self.clusters:
                return False
            kept = super().offer_crop(cluster, crop, quality, source)
            if kept and self.folder is not None:
                name = next(
                    n for _, n in self.clusters[cluster].crops if n.endswith(f"-{self._seq}.jpg")
                )
                with contextlib.suppress(OSError):
                    self._written += (self.folder / cluster / name).stat().st_size
                if self._written > self.max_bytes:
                    self.trim()
            return kept

    def used_bytes(self) -> int:
        """The bytes the kept crops take on disk."""
        if self.folder is None:
            return 0
        total = 0
        with self.lock:
            for c in self.clusters.values():
                for _, name in c.crops:
                    with contextlib.suppress(OSError):
                        total += (self.folder / c.id / name).stat().st_size
        return total

    def trim(self) -> int:
        """Delete the oldest crops until the kept ones fit in ``max_bytes``; returns how many."""
        if self.folder is None:
            return 0
        removed = 0
        with self.lock:
            sized = []
            for c in self.clusters.values():
                for quality, name in c.crops:
                    try:
                        size = (self.folder / c.id / name).stat().st_size
                    except OSError:
                        size = 0
                    sized.append((_crop_order(name), c.id, quality, name, size))
            total = sum(s[-1] for s in sized)
            emptied = set()
            for _, cid, quality, name, size in sorted(sized):
                if total <= self.max_bytes:
                    break
                (self.folder / cid / name).unlink(missing_ok=True)
                self.clusters[cid].crops.remove((quality, name))
                emptied.add(cid)
                total -= size
                removed += 1
            for cid in emptied:
                if not self.clusters[cid].crops:
                    self.forget(cid)
            self._written = total
            if removed:
                self._save()
        if removed:
            log.info("strangers: storage cap reached, deleted the %d oldest crop(s)", removed)
        return removed

    def crop_paths(self, cluster: str) -> list[Path]:
        """See :meth:`UnknownClusters.crop_paths`."""
        with self.lock:
            return super().crop_paths(cluster)

    def forget(self, cluster: str) -> None:
        """See :meth:`UnknownClusters.forget`."""
        with self.lock:
            super().forget(cluster)

    def get(self, cluster: str) -> Cluster:
        """The cluster with this id.

        Raises:
            ConceptNotFoundError: no such cluster.
        """
        with self.lock:
            found = self.clusters.get(cluster)
            if found is None:
                known = ", ".join(sorted(self.clusters)) or "none"
                msg = f"no unknown-face cluster {cluster!r} (clusters: {known})"
                raise ConceptNotFoundError(msg)
            return found

    def listing(self) -> list[dict[str, Any]]:
        """Every cluster with crops, newest sighting first, as JSON-ready dicts."""
        with self.lock:
            out: list[dict[str, Any]] = [
                {
                    "id": c.id,
                    "count": c.count,
                    "first_seen": c.first_seen,
                    "last_seen": c.last_seen,
                    "crops": len(c.crops),
                    "cameras": sorted(set(c.sources)),
                }
                for c in self.clusters.values()
                if c.crops
            ]
        out.sort(key=lambda d: -d["last_seen"])
        return out

    def dismiss(self, cluster: str) -> None:
        """Delete a cluster and its crops.

        Raises:
            ConceptNotFoundError: no such cluster.
        """
        with self.lock:
            self.get(cluster)
            self.forget(cluster)

    def merge(self, source: str, into: str) -> Cluster:
        """Move ``source``'s faces and best crops into ``into`` and delete ``source``.

        Raises:
            ConceptNotFoundError: either cluster does not exist.
            InvalidInputError: a cluster merged into itself.
        """
        if source == into:
            msg = f"cannot merge cluster {source!r} into itself"
            raise InvalidInputError(msg)
        with self.lock:
            a, b = self.get(into), self.get(source)
            total = max(a.count + b.count, 1)
            a.centroid = ((a.centroid * a.count + b.centroid * b.count) / total).astype(np.float32)
            a.count += b.count
            a.first_seen = min(a.first_seen, b.first_seen)
            a.last_seen = max(a.last_seen, b.last_seen)
            a.sources = (a.sources + b.sources)[-20:]
            if self.folder is not None:
                dest = self.folder / a.id
                dest.mkdir(parents=True, exist_ok=True, mode=0o700)
                for quality, name in b.crops:
                    src = self.folder / b.id / name
                    if src.is_file():
                        shutil.move(src, dest / name)
                        a.crops.append((quality, name))
                a.crops.sort(reverse=True)
                for _, dropped in a.crops[self.max_crops :]:
                    (dest / dropped).unlink(missing_ok=True)
                del a.crops[self.max_crops :]
            self.forget(b.id)
            return a

    def purge(self, now: float | None = None) -> int:
        """Delete crops older than the retention (and clusters left with none), then trim.

        Returns:
            How many crops were deleted.
        """
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400.0
        removed = 0
        with self.lock:
            for c in list(self.clusters.values()):
                keep = []
                for quality, name in c.crops:
                    t = _crop_time(name)
                    if t is not None and t < cutoff:
                        if self.folder is not None:
                            (self.folder / c.id / name).unlink(missing_ok=True)
                        removed += 1
                    else:
                        keep.append((quality, name))
                c.crops = keep
                if not c.crops and c.last_seen < cutoff:
                    self.forget(c.id)
            if removed:
                self._save()
        return removed + self.trim()
