"""What every exporter's command line shares: pull the weights and the check photos, export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rap_edge.errors import RapEdgeError
from rap_edge.models import CHECK_PHOTOS, ModelManifest, ModelStore, sha256_file

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import torch


def export_onnx(
    model: torch.nn.Module, path: Path, *, size: int, output_names: Sequence[str]
) -> str:
    """Export an image model [N, 3, size, size] with the dynamo exporter; return the file's hash.

    The example batch is 2: with a batch-1 example the dynamo exporter failed on dlib's network
    ("Invalid ranges"). Opset 18, dynamic batch, everything in one file.
    """
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        model,
        (torch.zeros(2, 3, size, size),),
        str(path),
        input_names=["images"],
        output_names=list(output_names),
        dynamic_shapes={"x": {0: batch}},
        opset_version=18,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return sha256_file(path)


def weights_provenance(
    store: ModelStore, carrier: str, weights: Path
) -> tuple[str, dict[str, object]]:
    """The weights' SHA-256 and the provenance record to put in a manifest.

    Ids are built from the weights' hash: the vectors depend on the weights and the
    preprocessing, not on the ONNX file's bytes, so a re-export keeps the id (and the memory
    keeps its vectors).
    """
    weights_sha = sha256_file(weights)
    record = store.provenance().get(f"{carrier}/{weights.name}", {})
    return weights_sha, {"weights": weights.name, "weights_sha256": weights_sha, **record}


def check_photos(
    store_dir: str | Path | None, *, say: Callable[[str], None] | None = None
) -> list[Path]:
    """Pull (if needed) and return the real check photos (JPEGs of the check-photos carrier)."""
    photos = ModelStore(store_dir, carriers=[CHECK_PHOTOS])
    photos.pull(say=say)
    return [
        photos.file(CHECK_PHOTOS.key, f.name)
        for f in CHECK_PHOTOS.files
        if f.name.endswith(".jpg")
    ]


def run(
    argv: Sequence[str] | None, *, doc: str, carrier: str, export: Callable[..., ModelManifest]
) -> int:
    """Parse ``--store``/``--out``, pull ``carrier`` and the photos, export, print the result."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    parser.add_argument(
        "--out", type=Path, help="folder for the ONNX file and manifest (default: <store>/onnx)"
    )
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    store.pull([carrier], say=print)
    paths = check_photos(args.store, say=print)
    manifest = export(store, args.out or store.path / "onnx", photos=paths)
    print(f"wrote {manifest.onnx} ({manifest.encoder_id}); parity: {manifest.parity}")
    return 0


def command_main(
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
) -> int:
    """``python -m export.X`` for a converter that ``rap-edge export`` also runs.

    The module's docstring is the help (its first paragraph the summary); a ``RapEdgeError``
    from ``run`` is printed in one line, as ``rap-edge`` prints it, with its exit code.
    """
    summary, _, details = (doc or "").partition("\n\n")
    parser = argparse.ArgumentParser(
        description=summary,
        epilog=details or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except RapEdgeError as err:
        print(f"rap-edge: error: {err}", file=sys.stderr)
        return err.exit_code
