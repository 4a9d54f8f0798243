"""Fixtures for the irisctl tests: a CLI runner, a localhost inventory, moto in server mode.

irisctl end to end against a real sandbox host lives with the host tests
(tests/hosts/test_irisctl.py), which share one sandbox per run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
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


# How long moto may take to listen.
MOTO_READY_TIMEOUT_S = 30
MOTO_SERVER = ("-m", "moto.server")


def start_moto(
    tmp_path_factory: pytest.TempPathFactory, python_args: Sequence[str] = MOTO_SERVER, **env: str
) -> Iterator[str]:
    """moto in server mode on a free loopback port (``python_args`` start it, followed by
    ``-H 127.0.0.1 -p PORT``); yields its URL, stops it after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, *python_args, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + MOTO_READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, "moto exited at start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"moto not listening on {port}"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def moto_starter():  # type: ignore[no-untyped-def]
    """``start_moto`` for a test module that starts a moto of its own (other settings)."""
    return start_moto


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto per test module: the AWS account its story runs in."""
    yield from start_moto(tmp_path_factory)


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An operator's SSH public key (the instances' key pair is imported from it)."""
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub")
