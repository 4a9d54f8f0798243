"""The deploy lock: one exclusive create on the host, refusals as data, taken before any build.

The lock module and lock.yml run for real over Ansible's local connection, with the lock file
in a temporary directory.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import sys
import threading
from pathlib import Path

import pytest
from irisctl.errors import EXIT_LOCKED, DeployLockedError, IrisctlError
from irisctl.ops import deploy
from irisctl.ops.lock import release_deploy_lock, unlock
from irisctl.ops.target import Target
from irisctl.paths import project_root
from irisctl.runner import run_playbook

LIBRARY = project_root() / "roles" / "release" / "library" / "iris_deploy_lock.py"


def load_lock_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("iris_deploy_lock", LIBRARY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _race_process(path: str, token: str, start, results) -> None:  # type: ignore[no-untyped-def]
    start.wait()
    results.put((token, load_lock_module().try_create(path, {"token": token})))


def test_exclusive_create_lets_exactly_one_of_many_simultaneous_takers_win(tmp_path: Path) -> None:
    path = str(tmp_path / "deploy.lock")
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(8), context.Queue()
    racers = [
        context.Process(target=_race_process, args=(path, f"t{i}", start, results))
        for i in range(8)
    ]
    for racer in racers:
        racer.start()
    outcomes = dict(results.get(timeout=60) for _ in racers)
    for racer in racers:
        racer.join(timeout=60)
    winners = [token for token, won in outcomes.items() if won]
    assert len(winners) == 1
    assert json.loads(Path(path).read_text())["token"] == winners[0]


@pytest.fixture
def lock_inventory(tmp_path: Path) -> Path:
    """This machine over the local connection, the lock file in tmp_path, no privilege change."""
    path = tmp_path / "hosts.ini"
    path.write_text(
        "[iris]\n"
        f"local-1 ansible_connection=local ansible_python_interpreter={sys.executable}"
        f" ansible_become=false service_deploy_lock_path={tmp_path / 'deploy.lock'}\n"
    )
    return path


def lock_vars(token: str, holder: str = "alice@laptop", **extra: object) -> dict:
    return {
        "iris_deploy_lock_token": token,
        "iris_deploy_holder": holder,
        "service_version": "1.2.3",
        **extra,
    }


def test_lock_play_takes_the_lock_and_a_second_deploy_is_refused_with_its_holder(
    lock_inventory: Path, tmp_path: Path
) -> None:
    first = run_playbook("lock", lock_inventory, extravars=lock_vars("aaa"))
    assert first.reports["local-1"]["lock_acquired"] is True
    held = json.loads((tmp_path / "deploy.lock").read_text())
    assert held["holder"] == "alice@laptop" and held["token"] == "aaa"

    again = run_playbook("lock", lock_inventory, extravars=lock_vars("aaa"))
    assert again.reports["local-1"]["lock_acquired"] is True  # the same deploy confirming

    with pytest.raises(DeployLockedError) as caught:
        run_playbook("lock", lock_inventory, extravars=lock_vars("bbb", holder="bob@desk"))
    assert caught.value.exit_code == EXIT_LOCKED
    refused = caught.value.data["lock"]
    assert refused["holder"] == "alice@laptop" and refused["version"] == "1.2.3"
    assert isinstance(refused["age_seconds"], int) and refused["age_seconds"] >= 0
    assert "by alice@laptop since" in str(caught.value)


def test_unlock_play_removes_any_lock_and_reports_its_age(lock_inventory: Path) -> None:
    run_playbook("lock", lock_inventory, extravars=lock_vars("aaa"))
    data = unlock(Target(lock_inventory))
    (host,) = data["hosts"]
    assert host["removed"] is True and host["lock"]["holder"] == "alice@laptop"
    assert host["age_seconds"] >= 0
    assert unlock(Target(lock_inventory))["hosts"][0]["removed"] is False


def test_a_deploy_releases_only_its_own_lock(lock_inventory: Path, tmp_path: Path) -> None:
    run_playbook("lock", lock_inventory, extravars=lock_vars("aaa"))
    release_deploy_lock(Target(lock_inventory), {"iris_deploy_lock_token": "zzz"})
    assert (tmp_path / "deploy.lock").exists()
    release_deploy_lock(Target(lock_inventory), {"iris_deploy_lock_token": "aaa"})
    assert not (tmp_path / "deploy.lock").exists()


def test_refused_deploy_builds_nothing_and_keeps_the_other_lock(
    lock_inventory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_playbook("lock", lock_inventory, extravars=lock_vars("other", holder="bob@desk"))
    built: list[object] = []
    monkeypatch.setattr(deploy, "prepare_release", lambda *a, **k: built.append(a))
    with pytest.raises(DeployLockedError) as caught:
        deploy.deploy(Target(lock_inventory), version="2.0.0")
    assert caught.value.data["lock"]["holder"] == "bob@desk"
    assert built == []
    assert json.loads((tmp_path / "deploy.lock").read_text())["token"] == "other"


def test_a_failed_build_releases_the_lock_it_took(
    lock_inventory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_build(*_args: object, **_kwargs: object) -> None:
        assert (tmp_path / "deploy.lock").exists()  # taken before the build
        raise IrisctlError("build failed: no compiler")

    monkeypatch.setattr(deploy, "prepare_release", broken_build)
    with pytest.raises(IrisctlError, match="no compiler"):
        deploy.deploy(Target(lock_inventory), version="2.0.0")
    assert not (tmp_path / "deploy.lock").exists()


def test_two_lock_plays_started_together_exactly_one_acquires(lock_inventory: Path) -> None:
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def take(token: str) -> None:
        start.wait()
        try:
            run_playbook("lock", lock_inventory, extravars=lock_vars(token, holder=token))
            outcomes[token] = "acquired"
        except DeployLockedError as exc:
            outcomes[token] = exc.data["lock"]["holder"]

    threads = [threading.Thread(target=take, args=(t,)) for t in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["one", "two"]
    winners = [t for t, o in outcomes.items() if o == "acquired"]
    assert len(winners) == 1
    loser = "two" if winners == ["one"] else "one"
    assert outcomes[loser] == winners[0]  # refused, naming the winner


def test_refused_deploy_with_json_prints_the_refusal_as_one_json_document(
    lock_inventory: Path, invoke
) -> None:  # type: ignore[no-untyped-def]
    run_playbook("lock", lock_inventory, extravars=lock_vars("other", holder="bob@desk"))
    result = invoke("-i", str(lock_inventory), "deploy", "--version", "2.0.0", "--json")
    assert result.exit_code == EXIT_LOCKED
    data = json.loads(result.stdout)
    assert data["exit_code"] == EXIT_LOCKED and data["host"] == "local-1"
    assert data["lock"]["holder"] == "bob@desk" and data["lock"]["age_seconds"] >= 0
    assert "deploy locked on local-1 by bob@desk" in data["error"]
    assert "error: deploy locked on local-1 by bob@desk" in result.stderr
