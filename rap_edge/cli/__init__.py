"""The ``rap-edge`` command line.

Exit codes: 0 success, 1 a mistake in the input (fix the command; usage errors such as an
unknown option or a missing argument included), 2 a problem with the environment (locked or
read-only memory, newer schema, damaged files), 130 interrupted, 141 the reader of the output
went away (``rap-edge ... | head``: the rest of the output is dropped without a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, NoReturn, cast

from rap_edge import __version__
from rap_edge.errors import RapEdgeError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_USAGE", "build_parser", "main"]

EXIT_USAGE = 1
"""A usage error (unknown option, missing or malformed argument) is a mistake in the input."""

EXIT_BROKEN_PIPE = 141
"""What a shell reports for a program ended by SIGPIPE (128 + 13)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit 1, as every other input mistake does.

    ``add_subparsers`` builds the subcommands' parsers with the parent's class, so every
    ``rap-edge`` subcommand inherits this.
    """

    def error(self, message: str) -> NoReturn:
        """Print the usage and the message, and exit with :data:`EXIT_USAGE`."""
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands register themselves)."""
    from rap_edge.cli import _ask, _demo, _eval, _export, _memory, _models, _run, _serve

    parser = _Parser(
        prog="rap-edge",
        description=(
            "Retrieval-Augmented Personalization on the device: remember a user's people, "
            "pets and objects, recognise them in camera frames, and describe them."
        ),
        epilog="Run `rap-edge COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"rap-edge {__version__}")
    # The subcommands are _Parser too; the modules' register() take the base type.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",  # noqa: SLF001
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )
    _memory.register(sub)
    _models.register(sub)
    _run.register(sub)
    _eval.register(sub)
    _export.register(sub)
    _ask.register(sub)
    _demo.register(sub)
    _serve.register(sub)
    return parser


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's capture)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except RapEdgeError as err:
        print(f"rap-edge: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("rap-edge: interrupted", file=sys.stderr)
        return 130
    return code
