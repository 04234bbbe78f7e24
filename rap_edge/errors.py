"""Error hierarchy of rap-edge.

Every error raised on purpose by the library derives from :class:`RapEdgeError`. Each carries an
``exit_code`` that the CLI uses: 1 for a mistake the user can fix in their input, 2 for a problem
with the environment (locked or read-only files, a memory written by a newer version, ...).
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConceptNotFoundError",
    "ConfigError",
    "ConflictError",
    "FaceCountError",
    "InvalidInputError",
    "MemoryLockedError",
    "MemoryReadOnlyError",
    "ModelStoreError",
    "RapEdgeError",
    "SchemaError",
    "StoreError",
]


class RapEdgeError(Exception):
    """Base class of every error rap-edge raises on purpose."""

    exit_code: int = 2


class InvalidInputError(RapEdgeError, ValueError):
    """Input that the caller can fix: bad names, images, vectors, files or parameters."""

    exit_code = 1


class FaceCountError(InvalidInputError):
    """A face concept's photo shows no face, or several and none was chosen.

    The one-face rule is the session's (:class:`rap_edge.app.Session` ``add_concept`` and
    ``update_concept``); each front end may word it its own way from the attributes.

    Attributes:
        image: Which photo of the edit (1-based).
        faces: How many faces it shows (0: none).
        name: The concept's name.
    """

    def __init__(self, message: str, *, image: int, faces: int, name: str) -> None:
        """The message (the CLI's wording) and what it is about."""
        super().__init__(message)
        self.image, self.faces, self.name = image, faces, name


class ConfigError(RapEdgeError):
    """A missing or inconsistent configuration value."""

    exit_code = 1


class StoreError(RapEdgeError):
    """The concept memory on disk cannot be used as asked."""


class ConceptNotFoundError(StoreError, KeyError):
    """No concept (or image) matches the given id or name."""

    exit_code = 1

    def __str__(self) -> str:
        """The message, without the quotes KeyError adds."""
        # KeyError quotes its argument; a message reads better plain.
        return str(self.args[0]) if self.args else "not found"


class ConflictError(StoreError):
    """The edit would break a uniqueness rule (for example a duplicate concept name)."""

    exit_code = 1


class SchemaError(StoreError):
    """The memory database has a schema this version cannot read (newer, or not a memory)."""


class MemoryLockedError(StoreError):
    """Another writer holds the memory for longer than the configured timeout."""


class MemoryReadOnlyError(StoreError):
    """The memory was opened read-only or its files cannot be written."""


class ModelStoreError(RapEdgeError):
    """The model store is missing, incomplete or damaged, or a download failed."""


class BackendError(RapEdgeError):
    """An inference backend or execution provider is unavailable or did not do what was asked."""
