"""Contracts shared across rap-edge: record types and the protocols backends implement.

Every record is a frozen dataclass so that stages exchange self-describing values, never bare
tuples or dicts. Array shapes and dtypes are documented on each field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

__all__ = [
    "Concept",
    "Embedder",
    "ImageRecord",
    "SearchHit",
]


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One reference image of a concept, stored content-addressed in the memory folder.

    Attributes:
        id: Stable integer id of the image within the memory.
        concept_id: Id of the concept the image belongs to.
        sha256: Hex SHA-256 of the image file's bytes (its content address).
        path: Absolute path of the stored copy.
        width: Width in pixels.
        height: Height in pixels.
        source_name: File name the image had when it was added (informational).
        added_at: Unix time the image was added.
        encoders: Ids of the encoders that have a vector for this image.
    """

    id: int
    concept_id: str
    sha256: str
    path: Path
    width: int
    height: int
    source_name: str
    added_at: float
    encoders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Concept:
    """A user's concept: a person, pet or object with a name and reference images.

    Attributes:
        id: Stable id (``c_`` followed by 12 hex digits); never reused.
        name: Display name, unique in the memory (case-insensitive).
        aliases: Other names the concept answers to (for example the RAP token ``<bo>``).
        category: Lower-case category such as ``person``, ``dog`` or ``mug``.
        info: Free-text information about the concept.
        created_at: Unix time of creation.
        updated_at: Unix time of the last edit.
        images: Reference images, oldest first.
    """

    id: str
    name: str
    aliases: tuple[str, ...]
    category: str
    info: str
    created_at: float
    updated_at: float
    images: tuple[ImageRecord, ...]


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One concept found for a query vector.

    Attributes:
        concept_id: Id of the matching concept.
        name: Its name at the time of the search.
        category: Its category.
        image_id: The reference image whose vector scored best for this concept.
        vector_key: Key of that vector in the index (the SQLite rowid of the vector).
        score: Cosine similarity in [-1, 1]; higher is closer.
    """

    concept_id: str
    name: str
    category: str
    image_id: int
    vector_key: int
    score: float


@runtime_checkable
class Embedder(Protocol):
    """Turns images into vectors; the memory uses it to embed pending reference images."""

    @property
    def encoder_id(self) -> str:
        """Stable id of the encoder (from its manifest); vectors of different ids never mix."""
        ...

    @property
    def dim(self) -> int:
        """Length of each output vector."""
        ...

    def embed(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Embed whole images.

        Args:
            images: BGR uint8 arrays of shape [H, W, 3].

        Returns:
            float32 array of shape [len(images), dim].
        """
        ...
