"""Open an exported model's ONNX Runtime session after checking the file against its manifest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rap_edge.errors import ModelStoreError
from rap_edge.models._store import sha256_file
from rap_edge.runtime import create_session

if TYPE_CHECKING:
    import onnxruntime as ort

    from rap_edge.models._manifest import ModelManifest
    from rap_edge.runtime import Provider


def open_session(manifest: ModelManifest, *, provider: Provider,
                 check_hash: bool) -> tuple[ort.InferenceSession, str]:
    """The session (and the provider it really runs on) for a manifest's model.

    Raises:
        ModelStoreError: if the ONNX file does not match the manifest's SHA-256, or is missing
            or not loadable.
    """
    if check_hash and manifest.onnx.is_file() and sha256_file(manifest.onnx) != (
        manifest.onnx_sha256
    ):
        msg = f"{manifest.onnx}: does not match the SHA-256 in its manifest {manifest.path}"
        raise ModelStoreError(msg)
    return create_session(manifest.onnx, provider=provider)
