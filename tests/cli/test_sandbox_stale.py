"""A sandbox whose processes died with the run that started it (a killed test run, a lost
session) is stale: nothing reports it as up, nothing joins it, and ``sandbox up`` clears it.

The hosts here are real processes: a copy of ``sleep`` named ``systemd-nspawn`` stands for a
host's nspawn (the name is what the liveness check reads), and ``sleep`` for the stand-ins.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from irisctl.sandbox import hosts, stack


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(hosts, "STATE_DIR", tmp_path)
    monkeypatch.setattr(stack, "STATE_FILE", tmp_path / "stack.json")
    return tmp_path


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def fake_nspawn(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> int:
    binary = tmp_path / "bin" / "systemd-nspawn"
    binary.parent.mkdir(exist_ok=True)
    sleep = shutil.which("sleep")
    assert sleep
    shutil.copy(sleep, binary)
    proc = subprocess.Popen([str(binary), "600"])
    started.append(proc)
    return proc.pid


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def add_host(state_dir: Path, name: str, ip: str, pid: int) -> None:
    run = state_dir / "run" / name
    run.mkdir(parents=True)
    (run / "ip").write_text(ip + "\n")
    (run / "pid").write_text(f"{pid}\n")


def save_state(names: list[tuple[str, str]], processes: dict[str, dict[str, str | int]]) -> None:
    info = stack.SandboxInfo(
        hosts=[hosts.Host(name=n, ip=ip) for n, ip in names],
        inventory=Path("/nonexistent/hosts.ini"),
        model_url="",
        secrets_endpoint=stack.MOTO_URL,
    )
    stack._save_state(info, processes)


def record(pid: int) -> dict[str, str | int]:
    return {"pid": pid, "start": hosts.process_start_time(pid) or "gone", "argv": "sleep"}


def test_a_host_whose_nspawn_died_is_not_running(
    state_dir: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    add_host(state_dir, "iris-sandbox-1", "10.231.0.11", fake_nspawn(tmp_path, processes))
    add_host(state_dir, "iris-sandbox-2", "10.231.0.12", dead_pid())
    plain = subprocess.Popen(["sleep", "600"])  # alive, but not an nspawn: a recycled pid
    processes.append(plain)
    add_host(state_dir, "iris-sandbox-3", "10.231.0.13", plain.pid)
    assert [h.name for h in hosts.running()] == ["iris-sandbox-1"]


def test_a_sandbox_is_up_only_while_its_hosts_and_stand_ins_live(
    state_dir: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    add_host(state_dir, "iris-sandbox-1", "10.231.0.11", fake_nspawn(tmp_path, processes))
    moto = subprocess.Popen(["sleep", "600"], start_new_session=True)
    processes.append(moto)
    save_state([("iris-sandbox-1", "10.231.0.11")], {"moto": record(moto.pid)})
    up = stack.sandbox_status()
    assert up is not None and [h.name for h in up.hosts] == ["iris-sandbox-1"]

    moto.kill()
    moto.wait()
    assert stack.sandbox_status() is None


def test_a_fleet_does_not_join_a_stale_sandbox(state_dir: Path, tmp_path: Path) -> None:
    add_host(state_dir, "iris-sandbox-1", "10.231.0.11", dead_pid())
    save_state([("iris-sandbox-1", "10.231.0.11")], {"moto": record(dead_pid())})
    with pytest.raises(stack.SandboxError, match="no sandbox came up within 0 s"):
        stack.join_as_fleet(2, tmp_path / "hosts.ini", wait_s=0.0)


def test_a_guest_run_is_waited_for_until_it_leaves_and_a_dead_one_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second single-host run of `make test` stays as a guest on the owner's hosts."""
    monkeypatch.setattr(stack, "GUESTS_DIR", tmp_path / "guests")
    stack.stay_as_guest("single-host")
    assert stack.wait_for_guests(timeout_s=0.0) == ["single-host"]
    stack.leave_as_guest("single-host")
    stack.leave_as_guest("single-host")  # idempotent
    assert stack.wait_for_guests(timeout_s=0.0) == []
    stack.stay_as_guest("single-host")
    record = json.loads((tmp_path / "guests" / "single-host.json").read_text())
    record["pid"] = dead_pid()  # a guest run that was killed
    (tmp_path / "guests" / "single-host.json").write_text(json.dumps(record))
    assert stack.wait_for_guests(timeout_s=0.0) == []
