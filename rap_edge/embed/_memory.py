"""Embedding a memory's face and object reference images with the encoders of a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rap_edge.embed._images import SkippedImage, embed_images

if TYPE_CHECKING:
    from rap_edge.memory import Memory
    from rap_edge.models import Encoder
    from rap_edge.pipeline import FaceEmbedder, ObjectEmbedder

__all__ = ["EmbedReport", "embed_faces_in_memory", "embed_objects_in_memory", "embed_pending"]


@dataclass(frozen=True, slots=True)
class EmbedReport:
    """What :func:`embed_pending` did.

    Attributes:
        faces: Images of face concepts embedded with the face encoder.
        objects: Images of object and pet concepts embedded with the object encoder.
        skipped: Images that could not be embedded (they stay pending), each with its
            concept's name and the reason.
    """

    faces: int = 0
    objects: int = 0
    skipped: tuple[SkippedImage, ...] = ()

    @property
    def embedded(self) -> int:
        """Face and object images embedded."""
        return self.faces + self.objects


def embed_pending(
    memory: Memory,
    *,
    faces: FaceEmbedder | None = None,
    objects: ObjectEmbedder | None = None,
    progress: bool = False,
) -> EmbedReport:
    """Embed the reference images that have no vector from the encoders in use.

    Face concepts (categories in :data:`~rap_edge.pipeline.FACE_CATEGORIES`) get vectors from
    ``faces``, every other concept from ``objects``; a mug never enters the face index, nor a
    person the object index. The active encoder is left as it is. An image that cannot be
    embedded (unreadable, no usable face box, a non-finite vector) is skipped and reported;
    the others are embedded all the same.

    Args:
        memory: The memory (opened writable).
        faces: The face embedder, or None to leave face concepts alone.
        objects: The object embedder, or None to leave object concepts alone.
        progress: Show progress bars.

    Returns:
        How many face and object images were embedded, and the images skipped.
    """
    face_count = object_count = 0
    skipped: list[SkippedImage] = []
    if faces is not None:
        face_count, skipped_faces = _embed_faces(
            memory, faces, batch_size=16, skip_failures=True, progress=progress
        )
        skipped.extend(skipped_faces)
    if objects is not None:
        object_count, skipped_objects = _embed_objects(
            memory, objects, batch_size=16, skip_failures=True, progress=progress
        )
        skipped.extend(skipped_objects)
    return EmbedReport(faces=face_count, objects=object_count, skipped=tuple(skipped))


def embed_faces_in_memory(memory: Memory, embedder: FaceEmbedder, *, batch_size: int = 16) -> int:
    """Embed the pending images of face concepts (categories in ``FACE_CATEGORIES``).

    Only those concepts get face vectors: a mug's photo never enters the face index. Returns
    the number of images embedded. Stops at the first image that cannot be embedded;
    :func:`embed_pending` skips and reports such images instead.
    """
    return _embed_faces(memory, embedder, batch_size=batch_size)[0]


def embed_objects_in_memory(
    memory: Memory, encoder: Encoder | ObjectEmbedder, *, batch_size: int = 16
) -> int:
    """Embed the pending images of object and pet concepts (categories not for faces).

    Each reference image is embedded whole (it is a photo of the object); a person's photo
    never enters the object index. The active encoder is left as it is. Returns the number of
    images embedded. Stops at the first image that cannot be embedded; :func:`embed_pending`
    skips and reports such images instead.

    Raises:
        InvalidInputError: if ``batch_size`` is not in 1..1024.
        StoreError: if a stored image is missing or corrupt.
    """
    return _embed_objects(memory, encoder, batch_size=batch_size)[0]


def _embed_faces(
    memory: Memory,
    embedder: FaceEmbedder,
    *,
    batch_size: int,
    skip_failures: bool = False,
    progress: bool | None = None,
) -> tuple[int, tuple[SkippedImage, ...]]:
    # rap_edge.pipeline re-exports this module's functions: imported here, not at the top.
    from rap_edge.pipeline._faces import FACE_CATEGORIES

    ids = {c.id for c in memory.list_concepts() if c.category in FACE_CATEGORIES}
    return embed_images(
        memory,
        embedder,
        batch_size=batch_size,
        concepts=ids,
        activate=False,
        desc="embedding faces",
        skip_failures=skip_failures,
        progress=progress,
    )


def _embed_objects(
    memory: Memory,
    encoder: Encoder | ObjectEmbedder,
    *,
    batch_size: int,
    skip_failures: bool = False,
    progress: bool | None = None,
) -> tuple[int, tuple[SkippedImage, ...]]:
    from rap_edge.pipeline._objects import is_object_category

    ids = {c.id for c in memory.list_concepts() if is_object_category(c.category)}
    return embed_images(
        memory,
        encoder,
        batch_size=batch_size,
        concepts=ids,
        activate=False,
        desc="embedding objects",
        skip_failures=skip_failures,
        progress=progress,
    )
