"""Open an exported model's ONNX Runtime session after checking the file against its manifest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rap_edge.errors import ModelStoreError
from rap_edge.models._store import sha256_file
from rap_edge.runtime import create_session

if TYPE_CHECKING:
    from collections.abc import Sequence

    import onnxruntime as ort

    from rap_edge.models._manifest import ModelManifest
    from rap_edge.runtime import Provider


def open_session(
    manifest: ModelManifest,
    *,
    provider: Provider | str,
    check_hash: bool,
    outputs: Sequence[str],
    check_dim: bool = False,
) -> tuple[ort.InferenceSession, str, dict[str, Any]]:
    """The session, the provider it really runs on, and its output shapes by name.

    Args:
        manifest: The model's manifest.
        provider: Execution provider to ask for.
        check_hash: Verify the ONNX file against the manifest's SHA-256 first.
        outputs: Output names the caller will read; the model must have them and the
            manifest's input.
        check_dim: The manifest's ``dim`` must be the last dimension of its output (when the
            model states it).

    Raises:
        ModelStoreError: if the ONNX file does not match the manifest (hash, input or output
            names, dimension), or is missing or not loadable.
    """
    if (
        check_hash
        and manifest.onnx.is_file()
        and sha256_file(manifest.onnx) != (manifest.onnx_sha256)
    ):
        msg = f"{manifest.onnx}: does not match the SHA-256 in its manifest {manifest.path}"
        raise ModelStoreError(msg)
    session, used = create_session(
        manifest.onnx, provider=provider, model_sha256=manifest.onnx_sha256 or None
    )
    inputs = [i.name for i in session.get_inputs()]
    shapes = {o.name: o.shape for o in session.get_outputs()}
    if manifest.input_name not in inputs or set(outputs) - set(shapes):
        msg = (
            f"manifest {manifest.path} does not match its model: it names input "
            f"{manifest.input_name!r} and outputs {', '.join(map(repr, outputs))}; the model "
            f"has {inputs} and {sorted(shapes)}"
        )
        raise ModelStoreError(msg)
    last = shapes[manifest.output_name][-1] if check_dim else None
    if isinstance(last, int) and last != manifest.dim:
        msg = f"manifest {manifest.path} says dim {manifest.dim}, the model outputs {last}"
        raise ModelStoreError(msg)
    return session, used, shapes
