"""``rap-edge export ...``: the model conversion toolchain of the repository's ``export/`` folder.

The converters live beside the package, in the repository (they need the ``export`` extra:
torch, transformers, onnx), so this command works from a clone installed with ``pip install -e``
(``make`` does that). Each converter module provides ``add_arguments``, ``run`` and a docstring
whose first paragraph is its help line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

# (subcommand, module in export/)
_COMMANDS = (
    ("encoder", "hf_encoder"),
    ("vision-tower", "vlm_vision"),
    ("rap-mllm", "rap_mllm"),
    ("llm", "llm"),
    ("engine", "engine"),
)
_REPO = Path(__file__).resolve().parents[2]


def _converter(name: str) -> ModuleType | None:
    """``export.<name>`` from the repository this package was installed from, if it has one."""
    if not (_REPO / "export" / "__init__.py").is_file():
        return None
    if str(_REPO) not in sys.path:
        sys.path.insert(0, str(_REPO))
    try:
        return importlib.import_module(f"export.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"export.{name}":  # a converter this checkout does not have
            return None
        raise


def _missing(args: argparse.Namespace) -> int:
    print(
        f"rap-edge: error: `rap-edge export {args.export_command}` needs the repository's "
        f"export/ folder ({_REPO / 'export'} is missing): run it from a clone installed with "
        "`pip install -e '.[export]'`",
        file=sys.stderr,
    )
    return 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``export`` and its subcommands."""
    p = sub.add_parser(
        "export",
        help="convert models for the device: encoders, VLM parts, LLMs, TensorRT",
        description="Convert local Hugging Face folders and ONNX files into what the runtime "
        "loads: ONNX image/text encoders with manifests, VLM vision towers, quantized LLMs, "
        "split RAP checkpoints, TensorRT engines. Needs the `export` extra.",
    )
    cmds = p.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    for command, module_name in _COMMANDS:
        module = _converter(module_name)
        if module is None and not (_REPO / "export").is_dir():
            c = cmds.add_parser(command, help="(needs the repository's export/ folder)")
            c.set_defaults(func=_missing)
            continue
        if module is None:
            continue
        doc = (module.__doc__ or command).strip()
        summary = doc.split("\n\n", 1)[0].replace("\n", " ")
        c = cmds.add_parser(
            command,
            help=summary[0].lower() + summary[1:].rstrip("."),
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(c)
        c.set_defaults(func=module.run)
