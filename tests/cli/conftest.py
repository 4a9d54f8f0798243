"""Fixtures for the irisctl tests: a CLI runner, a localhost inventory.

irisctl end to end against a real sandbox host lives with the host tests
(tests/hosts/test_irisctl.py), which share one sandbox per run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from irisctl.main import cli


@pytest.fixture(autouse=True)
def _isolated_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No operator config or environment leaks into a test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    for var in ("IRISCTL_INVENTORY", "IRISCTL_CONFIG", "IRISCTL_CA_BUNDLE", "IRISCTL_DEBUG"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner: CliRunner):  # type: ignore[no-untyped-def]
    """Run irisctl in-process; returns the Click result (stdout, stderr, exit_code)."""

    def run(*args: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), catch_exceptions=False, **kwargs)

    return run


@pytest.fixture
def local_inventory(tmp_path: Path) -> Path:
    """An inventory whose one `iris` host is this machine, over the local connection."""
    path = tmp_path / "hosts.ini"
    path.write_text(
        f"[iris]\nlocal-1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    return path


@pytest.fixture
def playbook(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a throw-away playbook and return its absolute path."""

    def write(body: str, name: str = "play.yml") -> Path:
        path = tmp_path / name
        path.write_text(body)
        return path

    return write
