"""ProcessBackend without a model: the template backend in a child process."""

from __future__ import annotations

import argparse
import os
import signal

import pytest

import rap_edge.cli
from rap_edge.errors import BackendError, ConceptNotFoundError, InvalidInputError
from rap_edge.generate import Generator, TemplateBackend, build_prompt
from rap_edge.generate._process import ProcessBackend, _child_error


@pytest.fixture
def proc():
    backend = ProcessBackend("template", start_timeout=120)
    yield backend
    backend.close()


def test_a_killed_child_is_a_backend_error_with_exit_code_2(
    proc: ProcessBackend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = build_prompt("Who is here?", [])
    assert proc.name == "template" and "in child process" in proc.note
    assert "".join(proc.generate(prompt, max_tokens=100)) == TemplateBackend.answer(prompt)
    pid = proc._proc.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(
        BackendError, match=r"the model process died \(killed by signal 9\)"
    ) as got:
        "".join(proc.generate(prompt, max_tokens=8))
    err = got.value
    assert not isinstance(err, InvalidInputError) and err.exit_code == 2
    # The guard still answers, with the template, and says why.
    r = Generator(proc).answer(prompt)
    assert r.fell_back and r.backend == "template" and "BackendError" in (r.error or "")

    # The CLI maps it to exit code 2 (a command that raises it, without loading a model).
    def fail(_args: argparse.Namespace) -> int:
        raise err

    parser = argparse.ArgumentParser(prog="rap-edge")
    parser.set_defaults(func=fail)
    monkeypatch.setattr(rap_edge.cli, "build_parser", lambda: parser)
    assert rap_edge.cli.main([]) == 2
    assert "rap-edge: error: the model process died" in capsys.readouterr().err


def test_a_closed_backend_says_so(proc: ProcessBackend) -> None:
    proc.close()
    proc.close()  # idempotent
    with pytest.raises(BackendError, match="the model process has stopped"):
        list(proc.generate(build_prompt("Who is here?", []), max_tokens=4))


def test_errors_from_the_childs_backend_keep_their_rap_edge_class() -> None:
    assert type(_child_error("InvalidInputError: too long", "InvalidInputError")) is (
        InvalidInputError
    )
    assert isinstance(_child_error("x", "ConceptNotFoundError"), ConceptNotFoundError)
    for name in ("RuntimeError", "OSError", "Exception", "__class__", "nonsense"):
        err = _child_error(f"{name}: boom", name)
        assert type(err) is BackendError and err.exit_code == 2
        assert str(err) == f"the model process failed: {name}: boom"
