"""Embedding a memory's pending reference images with one encoder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import InvalidInputError, RapEdgeError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from pathlib import Path

    import numpy.typing as npt

    from rap_edge.interfaces import Embedder, ImageRecord
    from rap_edge.memory import Memory

__all__ = ["SkippedImage", "embed_images"]

_MAX_BATCH = 1024
_TINY_NORM = math.sqrt(float(np.finfo(np.float32).tiny))


@dataclass(frozen=True, slots=True)
class SkippedImage:
    """A reference image that could not be embedded (it stays pending).

    Attributes:
        concept: Name of the concept it belongs to.
        image_id: Its id in the memory.
        path: Its stored file.
        reason: Why, in a sentence (such as the encoder's error).
    """

    concept: str
    image_id: int
    path: Path
    reason: str


def embed_images(  # noqa: PLR0913 - the options of one embedding pass
    memory: Memory,
    embedder: Embedder,
    *,
    batch_size: int = 16,
    concepts: Collection[str] | None = None,
    activate: bool = True,
    desc: str = "embedding",
    skip_failures: bool = False,
    progress: bool | None = None,
) -> tuple[int, tuple[SkippedImage, ...]]:
    """Embed the pending images of ``memory`` with ``embedder`` and store their vectors.

    Args:
        memory: The memory (opened writable).
        embedder: The encoder; its id names the vectors.
        batch_size: Images per ``embed`` call, 1..1024.
        concepts: Only images of these concept ids (None: every pending image). The face
            and object paths use it so that a mug never enters the face index.
        activate: Make ``embedder`` the active (default search) encoder first.
        desc: Progress bar label.
        skip_failures: Skip an image that cannot be read or embedded (or whose vector is NaN,
            infinite or zero) and report it, instead of raising at the first one. A batch that
            fails is retried one image at a time, so one bad image never stops the others.
        progress: Show a progress bar (None: only on a terminal).

    Returns:
        The number of images embedded, and the images skipped.

    Raises:
        InvalidInputError: on a bad ``batch_size``.
        StoreError: without ``skip_failures``, if a stored image is missing or corrupt.
    """
    from tqdm import tqdm

    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not (1 <= batch_size <= _MAX_BATCH)
    ):
        msg = f"batch_size must be in 1..{_MAX_BATCH}, got {batch_size!r}"
        raise InvalidInputError(msg)
    if activate:
        memory.set_active_encoder(embedder.encoder_id, dim=embedder.dim)
    todo = [
        r
        for r in memory.pending(embedder.encoder_id)
        if concepts is None or r.concept_id in concepts
    ]
    skipped: list[SkippedImage] = []

    def skip(rec: ImageRecord, reason: str) -> None:
        skipped.append(SkippedImage(memory.get(rec.concept_id).name, rec.id, rec.path, reason))

    done = 0
    disable = None if progress is None else not progress
    with tqdm(total=len(todo), desc=desc, unit="img", disable=disable) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            records: list[ImageRecord] = []
            pixels: list[npt.NDArray[np.uint8]] = []
            for rec in batch:
                img = _read_stored(rec.path)
                if img is None:
                    msg = f"stored image {rec.path} is missing or corrupt; run `verify`"
                    if not skip_failures:
                        raise StoreError(msg)
                    skip(rec, msg)
                    continue
                records.append(rec)
                pixels.append(np.asarray(img, dtype=np.uint8))
            if skip_failures:
                records, vecs = _embed_or_skip(embedder, records, pixels, skip)
            else:
                vecs = embedder.embed(pixels)
            if records:
                memory.set_vectors([r.id for r in records], vecs, encoder=embedder.encoder_id)
                done += len(records)
            bar.update(len(batch))
    return done, tuple(skipped)


def _embed_or_skip(
    embedder: Embedder,
    records: list[ImageRecord],
    pixels: list[npt.NDArray[np.uint8]],
    skip: Callable[[ImageRecord, str], None],
) -> tuple[list[ImageRecord], npt.NDArray[np.float32]]:
    """Embed a batch; on an error, each image alone. Return the records kept and their vectors."""
    if not records:
        return [], np.empty((0, embedder.dim), dtype=np.float32)
    try:
        vecs = _checked(embedder.embed(pixels), len(records), embedder.dim)
    except Exception:  # noqa: BLE001 - the culprit is found below, one image at a time
        vecs = None
    if vecs is None:
        rows: list[npt.NDArray[np.float32] | str] = []
        for px in pixels:
            try:
                rows.append(_checked(embedder.embed([px]), 1, embedder.dim)[0])
            except Exception as err:  # noqa: BLE001 - reported, and the others go on
                rows.append(_reason(err))
    else:
        rows = list(vecs)
    kept: list[ImageRecord] = []
    out: list[npt.NDArray[np.float32]] = []
    for rec, row in zip(records, rows, strict=True):
        if isinstance(row, str):
            skip(rec, row)
        elif not np.isfinite(row).all() or float(np.linalg.norm(row)) < _TINY_NORM:
            skip(rec, f"{embedder.encoder_id} returned a NaN, infinite or zero vector")
        else:
            kept.append(rec)
            out.append(row)
    if not out:
        return [], np.empty((0, embedder.dim), dtype=np.float32)
    return kept, np.stack(out)


def _checked(vecs: object, count: int, dim: int) -> npt.NDArray[np.float32]:
    arr = np.asarray(vecs, dtype=np.float32)
    if arr.shape != (count, dim):
        msg = f"the encoder returned shape {list(arr.shape)} for {count} image(s) of dim {dim}"
        raise InvalidInputError(msg)
    return arr


def _reason(err: Exception) -> str:
    text = str(err) or type(err).__name__
    return text if isinstance(err, RapEdgeError) else f"{type(err).__name__}: {text}"


def _read_stored(path: Path) -> npt.NDArray[np.uint8] | None:
    """A stored reference image as BGR, checked from its header before decoding.

    A file an older rap-edge stored (or one replaced on disk) could be a decompression bomb;
    :func:`rap_edge.sources.read_image_file` refuses those before decoding. None when the file
    is missing, corrupt or refused.
    """
    from pathlib import Path

    from rap_edge.sources import normalize_frame, read_image_file

    try:
        return normalize_frame(read_image_file(Path(path)))
    except InvalidInputError:
        return None
