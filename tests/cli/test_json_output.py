"""Every command that prints speaks JSON, and human output shows no raw Python values."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from irisctl.commands import sandbox as sandbox_command
from irisctl.main import cli

# Commands that print nothing at all, so have nothing to say in JSON (none today).
PRINTS_NOTHING: set[str] = set()


def _leaves(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(command, click.Group):
        return [
            leaf for name, sub in command.commands.items() for leaf in _leaves(sub, (*path, name))
        ]
    return [path]


COMMANDS = _leaves(cli)


def test_the_walk_finds_the_whole_tree() -> None:
    assert {("logs",), ("sandbox", "up"), ("sandbox", "down"), ("cache", "stats")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_printing_command_accepts_json(invoke, path: tuple[str, ...]) -> None:
    if " ".join(path) in PRINTS_NOTHING:
        pytest.skip("prints nothing")
    result = invoke(*path, "--json", "--help")
    assert result.exit_code == 0, result.output
    assert "--json" in result.output


def test_sandbox_human_output_has_no_python_values(capsys) -> None:
    from irisctl.sandbox.hosts import Host
    from irisctl.sandbox.stack import SandboxInfo

    info = SandboxInfo(
        hosts=[Host("iris-sandbox-1", "10.231.0.11")],
        inventory=Path("/srv/hosts.ini"),
        model_url="",
        secrets_endpoint="http://10.231.0.1:14566",
    )
    sandbox_command._show(info, as_json=False)
    out = capsys.readouterr().out
    assert "iris-sandbox-1 (10.231.0.11)" in out
    for raw in ("[]", "{}", "None", "True", "False", "notes"):
        assert raw not in out
    sandbox_command._show(SandboxInfo(**{**info.__dict__, "notes": ["pebble slow"]}), False)
    assert "pebble slow" in capsys.readouterr().out
