"""The per-encoder USearch index: building it, and saving/loading it atomically.

The index is derived data. Its file carries a small header (encoder id, the encoder's
generation in SQLite, dimension, scalar kind, key count and a SHA-256 of the payload) in front
of USearch's own serialization. A file whose header does not match the database, or whose
payload hash is wrong, is treated as stale and rebuilt from SQLite.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import numpy.typing as npt
    from usearch.index import Index

MAGIC = b"RAPEIDX1"
INDEX_DTYPES = ("f16", "i8", "f32")
_BUILD_CHUNK = 8192
# Below this many stored scalars (vectors x dim) a brute-force scan costs about 0.3 ms or less
# and never misses; HNSW is approximate and can skip a few vectors even when asked
# for all of them. A personal memory is usually this small.
EXACT_BELOW_SCALARS = 500_000
# HNSW settings from bench/memory_search.py (recall@1 >= 0.99 on clustered data, 2 cores):
# M=32; ef=48 sufficed at 100k vectors, ef=96 at 1M. ef is not saved in the file.
CONNECTIVITY = 32
EXPANSION_ADD = 128


_LARGE_INDEX = 200_000


def expansion_search(count: int) -> int:
    """Search breadth (HNSW ef) for an index of ``count`` vectors."""
    return 64 if count < _LARGE_INDEX else 128


_HEADER_LEN = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class IndexHeader:
    """What an index file claims to contain.

    Attributes:
        encoder_id: Encoder the vectors belong to.
        generation: The encoder's generation counter in SQLite when the index was saved.
        dim: Vector dimension.
        dtype: USearch scalar kind (``f16``, ``i8`` or ``f32``).
        count: Number of vectors.
        payload_sha256: Hex SHA-256 of the USearch payload that follows the header.
    """

    encoder_id: str
    generation: int
    dim: int
    dtype: str
    count: int
    payload_sha256: str


def new_index(*, dim: int, dtype: str) -> Index:
    """Create an empty cosine index."""
    from usearch.index import Index

    return Index(
        ndim=dim,
        metric="cos",
        dtype=dtype,
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=expansion_search(0),
    )


def build_index(
    keys: npt.NDArray[np.uint64],
    vectors: npt.NDArray[np.float32],
    *,
    dim: int,
    dtype: str,
    desc: str,
) -> Index:
    """Build an index from all vectors, showing a progress bar on a terminal."""
    from tqdm import tqdm

    index = new_index(dim=dim, dtype=dtype)
    if len(keys):
        with tqdm(total=len(keys), desc=desc, unit="vec", disable=None, leave=False) as bar:
            for start in range(0, len(keys), _BUILD_CHUNK):
                stop = start + _BUILD_CHUNK
                index.add(keys[start:stop], vectors[start:stop])
                bar.update(len(keys[start:stop]))
    _set_expansion(index)
    return index


def save_index(path: Path, index: Index, *, encoder_id: str, generation: int) -> None:
    """Write the index atomically (temporary file, fsync, rename) with owner-only permissions."""
    saved = index.save()
    if saved is None:  # only a save to a path returns None
        msg = "USearch returned no buffer"
        raise RuntimeError(msg)
    payload = bytes(saved)
    header = json.dumps(
        {
            "encoder_id": encoder_id,
            "generation": generation,
            "dim": int(index.ndim),
            "dtype": _dtype_name(index),
            "count": len(index),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
        },
        sort_keys=True,
    ).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + _HEADER_LEN.pack(len(header)) + header + payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def read_header(path: Path) -> tuple[IndexHeader, bytes]:
    """Read an index file's header and payload.

    Raises:
        ValueError: if the file is not a complete, intact index file.
        OSError: if it cannot be read.
    """
    blob = path.read_bytes()
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _HEADER_LEN.size:
        msg = "not a rap-edge index file"
        raise ValueError(msg)
    (n,) = _HEADER_LEN.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + _HEADER_LEN.size
    try:
        fields = json.loads(blob[start : start + n])
        header = IndexHeader(**fields)
    except (ValueError, TypeError) as err:
        msg = f"unreadable header ({err})"
        raise ValueError(msg) from err
    payload = blob[start + n :]
    if hashlib.sha256(payload).hexdigest() != header.payload_sha256:
        msg = "payload hash mismatch (truncated or corrupt)"
        raise ValueError(msg)
    return header, payload


def load_index(
    path: Path, *, encoder_id: str, generation: int, dim: int, dtype: str
) -> tuple[Index | None, str]:
    """Load a saved index if it is intact and current; otherwise say why not.

    Returns:
        ``(index, "")`` when usable, else ``(None, reason)``.
    """
    from usearch.index import Index

    if not path.exists():
        return None, "missing"
    try:
        header, payload = read_header(path)
    except (OSError, ValueError) as err:
        return None, f"unreadable: {err}"
    expected = (encoder_id, generation, dim, dtype)
    found = (header.encoder_id, header.generation, header.dim, header.dtype)
    if found != expected:
        return None, f"stale: built for {found}, database is at {expected}"
    try:
        index = Index.restore(bytearray(payload))
    except (RuntimeError, ValueError) as err:
        return None, f"unreadable: {err}"
    if index is None or len(index) != header.count or int(index.ndim) != dim:
        return None, "unreadable: payload does not match its header"
    _set_expansion(index)
    return index, ""


def _set_expansion(index: Index) -> None:
    # The stubs call it read-only, but USearch has a setter (ef is not serialized).
    index.expansion_search = expansion_search(len(index))  # type: ignore[misc]


def search_keys(
    index: Index, query: npt.NDArray[np.float32], count: int
) -> Iterator[tuple[int, float]]:
    """Yield ``(key, approximate cosine similarity)`` for the ``count`` nearest vectors.

    The similarity is computed on the index's quantized copy (f16 or i8); callers re-rank
    with the exact float32 vectors.
    """
    count = min(count, len(index))
    if count <= 0:
        return
    matches = index.search(query, count, exact=len(index) * int(index.ndim) < EXACT_BELOW_SCALARS)
    for key, distance in zip(matches.keys, matches.distances, strict=True):
        if np.isfinite(distance):
            yield int(key), 1.0 - float(distance)


def _dtype_name(index: Index) -> str:
    kind = str(index.dtype).rsplit(".", 1)[-1].lower()
    return {"f16": "f16", "i8": "i8", "f32": "f32"}.get(kind, kind)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
