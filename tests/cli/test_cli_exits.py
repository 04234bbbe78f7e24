"""How ``rap-edge`` ends (issue 14): usage errors are input mistakes (exit 1), and a reader
that closes the pipe early (``| head``) ends the command quietly, without a traceback."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from rap_edge.cli import EXIT_BROKEN_PIPE, EXIT_USAGE, main

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["memory", "add"], "the following arguments are required: name"),
        (["memory", "list", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["run", "--source", "x", "--max-fps", "abc"], "invalid float value: 'abc'"),
        (["models", "verify", "--json", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_usage_errors_exit_1_like_every_input_mistake(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == EXIT_USAGE == 1
    err = capsys.readouterr().err
    assert message in err
    assert "usage: rap-edge" in err


def test_help_still_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["memory", "--help"])
    assert exit_.value.code == 0
    assert "usage: rap-edge memory" in capsys.readouterr().out


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    mem = tmp_path / "M"
    assert main(["memory", "init", "--memory", str(mem)]) == 0
    for i in range(40):  # enough JSON that it cannot all fit before the reader is gone
        assert main(["memory", "add", f"c{i}", "--category", "mug", "--memory", str(mem)]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "rap_edge", "memory", "list", "--json", "--memory", str(mem)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before anything is written (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE, err
    assert err == ""


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--read-timeout", "0"), ("--connect-timeout", "-1"), ("--backoff-max", "inf")],
)
def test_stream_timeouts_are_checked_before_anything_loads(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    memory = str(tmp_path / "memory")
    assert main(["memory", "init", "--memory", memory]) == 0
    for command in ("run", "serve"):
        argv = [command, "--source", "rtsp://127.0.0.1:9/none", flag, value, "--memory", memory]
        capsys.readouterr()
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"{flag} must be a positive number of seconds" in err, (command, err)


def test_a_stream_that_never_appears_fails_after_the_connect_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 9 on loopback refuses at once; the source is retried with backoff, then given up.
    code = main(["run", "--source", "rtsp://127.0.0.1:9/none", "--connect-timeout", "1"])
    assert code == 2  # the environment, not the input
    err = capsys.readouterr().err
    assert "rtsp://127.0.0.1:9/none: OpenCV cannot open this camera or stream" in err
    assert "connect timeout 1 s" in err
