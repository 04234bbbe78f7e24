"""Unknown faces, clustered while the stream runs, so they can be enrolled later.

Each unknown face track contributes its embeddings to one cluster: the nearest cluster centroid
at or above the face threshold, or a new cluster. A cluster keeps its best crops (largest face
times detector score), written as JPEG files under the cluster folder, plus ``clusters.json``
(centroid, counts, times, crop files) rewritten atomically after each change.
``rap-edge memory enroll-unknown CLUSTER --name NAME`` turns a cluster into a concept.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rap_edge.errors import ConceptNotFoundError, StoreError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["Cluster", "UnknownClusters"]

INDEX = "clusters.json"


@dataclass
class Cluster:
    """One group of unknown faces that look alike."""

    id: str
    centroid: npt.NDArray[np.float32]
    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    crops: list[tuple[float, str]] = field(default_factory=list)  # (quality, file name)
    sources: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "centroid": [float(v) for v in self.centroid],
            "crops": [{"quality": q, "file": f} for q, f in self.crops],
            "sources": self.sources[-5:],
        }


class UnknownClusters:
    """Online clustering of unknown face embeddings, persisted in ``folder``."""

    def __init__(self, folder: str | Path | None, *, threshold: float, max_crops: int = 5) -> None:
        """Open (or start) the clusters in ``folder`` (None: in memory only, no crops kept)."""
        self.folder = None if folder is None else Path(folder).expanduser()
        self.threshold = float(threshold)
        self.max_crops = max_crops
        self.clusters: dict[str, Cluster] = {}
        self._seq = 0
        self._last_id = 0  # cluster ids are never reused, even after a dismissal
        if self.folder is not None and (self.folder / INDEX).is_file():
            self._load()

    def _load(self) -> None:
        assert self.folder is not None  # noqa: S101 - guarded by the caller
        path = self.folder / INDEX
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for rec in data["clusters"]:
                self.clusters[str(rec["id"])] = Cluster(
                    id=str(rec["id"]),
                    centroid=np.asarray(rec["centroid"], dtype=np.float32),
                    count=int(rec["count"]),
                    first_seen=float(rec["first_seen"]),
                    last_seen=float(rec["last_seen"]),
                    crops=[(float(c["quality"]), str(c["file"])) for c in rec["crops"]],
                    sources=[str(s) for s in rec.get("sources", [])],
                )
            numbers = [int(c[1:]) for c in self.clusters if c[1:].isdigit()]
            self._last_id = max([int(data.get("last_id", 0)), *numbers])
        except (OSError, ValueError, KeyError, TypeError) as err:
            msg = f"{path}: unreadable unknown-face clusters ({err})"
            raise StoreError(msg) from err

    def _save(self) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.folder / (INDEX + ".tmp")
        data = {
            "version": 1,
            "threshold": self.threshold,
            "last_id": self._last_id,
            "clusters": [c.to_json() for c in self.clusters.values()],
        }
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / INDEX)

    def assign(self, embedding: npt.NDArray[np.float32], *, cluster: str | None = None) -> str:
        """Add an embedding to ``cluster`` (a track's own) or the nearest one; return its id."""
        vec = embedding.astype(np.float32) / max(float(np.linalg.norm(embedding)), 1e-12)
        if cluster is None or cluster not in self.clusters:
            best, best_cos = None, -2.0
            for c in self.clusters.values():
                cos = float(c.centroid @ vec) / max(float(np.linalg.norm(c.centroid)), 1e-12)
                if cos > best_cos:
                    best, best_cos = c, cos
            if best is not None and best_cos >= self.threshold:
                cluster = best.id
            else:
                self._last_id += 1
                cluster = f"u{self._last_id:04d}"
                self.clusters[cluster] = Cluster(
                    cluster, np.zeros_like(vec), first_seen=time.time()
                )
        c = self.clusters[cluster]
        c.centroid = ((c.centroid * c.count + vec) / (c.count + 1)).astype(np.float32)
        c.count += 1
        c.last_seen = time.time()
        return cluster

    def offer_crop(
        self, cluster: str, crop: npt.NDArray[np.uint8], quality: float, source: str = ""
    ) -> bool:
        """Keep ``crop`` if it is among the cluster's ``max_crops`` best; return whether kept."""
        c = self.clusters[cluster]
        if self.folder is None:
            return False
        if len(c.crops) >= self.max_crops and quality <= min(q for q, _ in c.crops):
            self._save()
            return False
        import cv2

        folder = self.folder / cluster
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._seq += 1  # unique even for several crops within one clock tick
        name = f"{time.time_ns()}-{self._seq}.jpg"
        if not cv2.imwrite(str(folder / name), crop, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            msg = f"{folder / name}: cannot write the crop"
            raise StoreError(msg)
        c.crops.append((quality, name))
        c.crops.sort(reverse=True)
        for _, dropped in c.crops[self.max_crops :]:
            (folder / dropped).unlink(missing_ok=True)
        del c.crops[self.max_crops :]
        if source:
            c.sources.append(source)
        self._save()
        return True

    def crop_paths(self, cluster: str) -> list[Path]:
        """The kept crops of a cluster, best first.

        Raises:
            ConceptNotFoundError: if there is no such cluster (or no folder).
        """
        if cluster not in self.clusters or self.folder is None:
            known = ", ".join(sorted(self.clusters)) or "none"
            msg = f"no unknown-face cluster {cluster!r} (clusters: {known})"
            raise ConceptNotFoundError(msg)
        return [self.folder / cluster / f for _, f in self.clusters[cluster].crops]

    def forget(self, cluster: str) -> None:
        """Delete a cluster and its crops (after enrollment)."""
        import shutil

        if cluster in self.clusters:
            del self.clusters[cluster]
            if self.folder is not None:
                shutil.rmtree(self.folder / cluster, ignore_errors=True)
            self._save()
