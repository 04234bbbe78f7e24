"""Embed: turn a memory's pending reference images into vectors with the encoders in use.

The memory stores images and vectors; reading pixels and running models is done here::

    from rap_edge.embed import embed_pending

    report = embed_pending(memory, faces=FaceEmbedder(models), objects=ObjectEmbedder(objs))
    for s in report.skipped:
        print(f"{s.concept}: image {s.image_id} ({s.path}) not embedded: {s.reason}")
"""

from __future__ import annotations

from rap_edge.embed._images import SkippedImage, embed_images
from rap_edge.embed._memory import (
    EmbedReport,
    embed_faces_in_memory,
    embed_objects_in_memory,
    embed_pending,
)

__all__ = [
    "EmbedReport",
    "SkippedImage",
    "embed_faces_in_memory",
    "embed_images",
    "embed_objects_in_memory",
    "embed_pending",
]
