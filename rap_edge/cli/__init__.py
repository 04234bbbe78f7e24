"""The ``rap-edge`` command line.

Exit codes: 0 success, 1 a mistake in the input (fix the command), 2 a problem with the
environment (locked or read-only memory, newer schema, damaged files), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from rap_edge import __version__
from rap_edge.errors import RapEdgeError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands register themselves)."""
    from rap_edge.cli import _ask, _demo, _eval, _export, _memory, _models, _run, _serve

    parser = argparse.ArgumentParser(
        prog="rap-edge",
        description=(
            "Retrieval-Augmented Personalization on the device: remember a user's people, "
            "pets and objects, recognise them in camera frames, and describe them."
        ),
        epilog="Run `rap-edge COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"rap-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _memory.register(sub)
    _models.register(sub)
    _run.register(sub)
    _eval.register(sub)
    _export.register(sub)
    _ask.register(sub)
    _demo.register(sub)
    _serve.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except RapEdgeError as err:
        print(f"rap-edge: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("rap-edge: interrupted", file=sys.stderr)
        return 130
    return code
