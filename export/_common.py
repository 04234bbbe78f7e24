"""What every exporter's command line shares: pull the weights and the check photos, export."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rap_edge.models import CHECK_PHOTOS, ModelManifest, ModelStore

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence



def check_photos(store_dir: str | Path | None, *, say: Callable[[str], None] | None = None
                 ) -> list[Path]:
    """Pull (if needed) and return the real check photos (JPEGs of the check-photos carrier)."""
    photos = ModelStore(store_dir, carriers=[CHECK_PHOTOS])
    photos.pull(say=say)
    return [photos.file(CHECK_PHOTOS.key, f.name) for f in CHECK_PHOTOS.files
            if f.name.endswith(".jpg")]


def run(argv: Sequence[str] | None, *, doc: str, carrier: str,
        export: Callable[..., ModelManifest]) -> int:
    """Parse ``--store``/``--out``, pull ``carrier`` and the photos, export, print the result."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    parser.add_argument("--out", type=Path,
                        help="folder for the ONNX file and manifest (default: <store>/onnx)")
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    store.pull([carrier], say=print)
    paths = check_photos(args.store, say=print)
    manifest = export(store, args.out or store.path / "onnx", photos=paths)
    print(f"wrote {manifest.onnx} ({manifest.encoder_id}); parity: {manifest.parity}")
    return 0
