"""The fleet's stories, through real hosts: a cache hit across hosts, one model call for
identical requests on both hosts, the store failing under load, a rolling deploy under load
with no failed request, and a broken release stopped at the first host.

Files and tests run in written order; each story leaves the fleet healthy for the next.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fleet_helpers import Fleet, Traffic, source
from host_helpers import BROKEN, V1, V2

OPERATOR_ENV = ("IRISCTL_INVENTORY", "IRISCTL_CONFIG", "IRISCTL_CA_BUNDLE", "IRISCTL_DEBUG")


@pytest.fixture(scope="module")
def operator(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of an operator whose irisctl talks to the fleet sandbox."""
    home = tmp_path_factory.mktemp("fleet-operator")
    env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENV}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env.update(XDG_CACHE_HOME=str(home / ".cache"), IRISCTL_INVENTORY=str(fleet.inventory))
    env.update(IRISCTL_CA_BUNDLE=str(fleet.pebble_roots))  # the fleet's certificates' root
    return env


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def health(fleet: Fleet, host_index: int) -> dict[str, Any]:
    status, raw = fleet.request(fleet.apps[host_index], "GET", "/api/iris/health")
    assert status == 200, raw
    return json.loads(raw)


def serving(fleet: Fleet) -> list[str]:
    return [health(fleet, i).get("version") for i in range(len(fleet.apps))]


def test_an_analysis_made_through_one_host_is_a_hit_through_the_other(fleet: Fleet) -> None:
    first, second = fleet.apps
    text = source("across-hosts")
    before = fleet.model_calls()
    status, made = fleet.analyze(first, text)
    assert status == 200, made
    assert made["metadata"]["cache_hit"] == 0
    assert fleet.model_calls() == before + 1
    status, again = fleet.analyze(second, text)
    assert status == 200, again
    assert again["metadata"]["cache_hit"] == 1
    assert again["responsibility_blocks"] == made["responsibility_blocks"]
    assert fleet.model_calls() == before + 1  # the second host asked nobody


def test_identical_requests_on_both_hosts_at_once_make_one_model_call(fleet: Fleet) -> None:
    text = source("single-flight", delay_s=2)  # long enough for every request to overlap
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def ask(host_index: int) -> None:
        answer = fleet.analyze(fleet.apps[host_index], text, timeout=60)
        with lock:
            answers.append(answer)

    before = fleet.model_calls()
    clients = [threading.Thread(target=ask, args=(i % 2,)) for i in range(6)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=90)
    assert [status for status, _ in answers] == [200] * 6, answers
    assert fleet.model_calls() == before + 1
    blocks = {json.dumps(body["responsibility_blocks"], sort_keys=True) for _, body in answers}
    assert len(blocks) == 1


def store_state(fleet: Fleet, host_index: int) -> str:
    """What an app host's health says of the shared store ("ok" or what is wrong)."""
    checks = health(fleet, host_index).get("checks") or {}
    store = checks.get("cache_store") if isinstance(checks, dict) else None
    assert store is not None, f"health reports no cache_store check: {checks}"
    return "ok" if store.get("ok") else str(store.get("detail") or store)


def test_the_store_stopping_and_returning_under_load_fails_no_request(fleet: Fleet) -> None:
    assert [store_state(fleet, i) for i in range(2)] == ["ok", "ok"]
    with Traffic(fleet) as traffic:
        traffic.wait_for(20)
        fleet.ssh(fleet.store, "systemctl stop redis-server")
        for index in range(2):
            wait_until(lambda i=index: store_state(fleet, i) != "ok", "health to report the store")
        traffic.wait_for(30)  # served from memory and the model meanwhile
        fleet.ssh(fleet.store, "systemctl start redis-server")
        for index in range(2):
            wait_until(lambda i=index: store_state(fleet, i) == "ok", "the store to be used again")
        traffic.wait_for(20)
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.answers[200] >= 70


def test_a_rolling_deploy_under_load_fails_no_request(
    fleet: Fleet, operator: dict[str, str]
) -> None:
    assert serving(fleet) == [V1, V1]
    release = str(fleet.releases[V2].path)
    with Traffic(fleet) as traffic:
        traffic.wait_for(10)
        started = time.monotonic()
        done = fleet.irisctl("deploy", "--from", release, "--json", env=operator)
        fleet.timings["rolling deploy, 2 hosts"] = time.monotonic() - started
        traffic.wait_for(10)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["healthy"] and set(summary["serving"].values()) == {V2}
    assert serving(fleet) == [V2, V2]
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.answers[200] >= 20


def test_a_broken_release_stops_at_the_first_host_and_the_others_keep_theirs(
    fleet: Fleet, operator: dict[str, str]
) -> None:
    release = str(fleet.releases[BROKEN].path)
    with Traffic(fleet) as traffic:
        traffic.wait_for(10)
        done = fleet.irisctl("deploy", "--from", release, env=operator)
        traffic.wait_for(10)
    assert done.returncode != 0
    assert "failed its health gate" in done.stderr + done.stdout
    assert serving(fleet) == [V2, V2]  # the first rolled back, the second never touched
    untouched = fleet.ssh(fleet.apps[1], "ls /opt/iris/releases")
    assert BROKEN not in untouched.split()
    assert traffic.failures == [], traffic.failures[:5]


def test_status_and_health_flag_version_drift(fleet: Fleet, operator: dict[str, str]) -> None:
    first = fleet.apps[0].name
    done = fleet.irisctl("--limit", first, "rollback", V1, "--json", env=operator)
    assert done.returncode == 0, done.stderr
    done = fleet.irisctl("status", "--json", env=operator)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["drift"] is True
    assert status["versions"] == {V1: [first], V2: [fleet.apps[1].name]}
    done = fleet.irisctl("health", env=operator)
    assert "version drift" in done.stdout
    assert f"load balancer {fleet.balancer.name}" in done.stdout
