"""Helpers for the evaluation tests: run a `lawtune` command in-process and insist that it succeeded."""

from __future__ import annotations

from typer.testing import CliRunner

from lawtune.cli import app

runner = CliRunner()


def invoke(*args):
    """`lawtune ARGS...` in-process; fails the test with the command's output unless it exited 0."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result
