"""One host's life after converge, in order: analyses through nginx against the model stand-in,
cache surviving restart / redeploy / reboot, a second version, a broken one rolled back
automatically, the deploy lock, and the rollback playbook."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import pytest
import yaml
from host_helpers import (
    BREAKAGES,
    BROKEN,
    DYING,
    EDGE_HOST,
    HANGING,
    LIFECYCLE_HOST,
    V1,
    V2,
    HttpAnswer,
    Sandbox,
    https,
    wait_healthy,
)
from irisctl.paths import project_root
from irisctl.sandbox import hosts
from irisctl.sandbox.broken_releases import GATE_FAILURE

SOURCE = (
    '"""Inventory helpers."""\n\n\n'
    "def total(items):\n    return sum(item.price for item in items)\n\n\n"
    "class Basket:\n    def __init__(self):\n        self.items = []\n"
)


@pytest.fixture(scope="module")
def box(converged: Sandbox) -> Sandbox:
    return converged


@pytest.fixture(scope="module")
def target(box: Sandbox):
    return box.info.hosts[LIFECYCLE_HOST]


def model_calls(box: Sandbox, host) -> int:
    """The host's own: another run's hosts share the stand-in (make test)."""
    with urllib.request.urlopen(f"{box.info.model_url}/_standin/stats", timeout=5) as resp:
        return json.loads(resp.read())["calls_by_client"].get(host.ip, 0)


def analyze(box: Sandbox, host) -> HttpAnswer:
    body = {"filename": "basket.py", "language": "python", "source_code": SOURCE}
    return https(host, "/api/iris/analyze", box.pebble_roots, method="POST", body=body)


def root_run(host, command: str) -> str:
    import subprocess

    done = subprocess.run(
        [*hosts.ssh_command(host, "root"), command], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def cache_files(host) -> list[str]:
    return root_run(host, "find /var/iris/cache -type f -name '*.json' | sort").split()


def assert_cache_hit(box: Sandbox, host) -> None:
    calls = model_calls(box, host)
    answer = analyze(box, host)
    assert answer.status == 200, answer.body
    assert answer.json()["metadata"]["cache_hit"] == 1
    assert model_calls(box, host) == calls, "a cached analysis must not call the model"


def test_analyze_round_trip_through_nginx_reaches_the_model(box: Sandbox, target) -> None:
    if not box.info.model_url:
        pytest.skip("no model stand-in: " + "; ".join(box.info.notes))
    calls = model_calls(box, target)
    answer = analyze(box, target)
    assert answer.status == 200, answer.body
    result = answer.json()
    assert result["success"] is True and result["responsibility_blocks"]
    assert result["metadata"]["cache_hit"] == 0
    assert model_calls(box, target) == calls + 1
    assert len(cache_files(target)) == 1


def test_cache_entry_survives_a_service_restart(box: Sandbox, target) -> None:
    before = cache_files(target)
    run = box.play("restart.yml", limit=target.name)
    assert run.rc == 0, run.explain()
    assert cache_files(target) == before
    assert_cache_hit(box, target)  # memory cache is gone: the hit comes from disk


def test_requests_through_nginx_during_a_restart_never_fail(box: Sandbox, target) -> None:
    """The socket unit holds the port while gunicorn restarts: requests wait instead of 502."""
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking() -> None:
        deadline = time.monotonic() + 60  # bounded even if the restart hangs
        while not stop.is_set() and time.monotonic() < deadline and len(statuses) < 2000:
            statuses.append(https(target, "/api/iris/health", box.pebble_roots, timeout=30).status)

    def answered(count: int, what: str) -> None:
        deadline = time.monotonic() + 30
        while len(statuses) < count:
            assert time.monotonic() < deadline, f"no answers {what} within 30 s: {statuses}"
            time.sleep(0.05)

    clients = [threading.Thread(target=keep_asking) for _ in range(3)]
    for client in clients:
        client.start()
    answered(len(clients), "before the restart")  # every client is asking
    before_restart = len(statuses)
    root_run(target, "systemctl restart iris-backend.service")
    during_restart = len(statuses) - before_restart
    answered(len(statuses) + len(clients), "after the restart")  # the restarted service answers
    stop.set()
    for client in clients:
        client.join()
    assert during_restart > 0, "no request was in flight while the service restarted"
    failed = [status for status in statuses if status != 200]
    assert not failed, f"{len(failed)} of {len(statuses)} requests failed: {sorted(set(failed))}"


def test_second_version_deploys_and_keeps_the_cache(box: Sandbox, target) -> None:
    before = cache_files(target)
    run = box.deploy(V2, limit=target.name)
    assert run.rc == 0, run.explain()
    assert run.total("changed") > 0
    assert wait_healthy(target, box.pebble_roots, V2).status == 200
    assert root_run(target, "readlink /opt/iris/current").strip() == f"releases/{V2}"
    assert cache_files(target) == before
    assert_cache_hit(box, target)
    assert root_run(target, "test ! -e /var/lib/iris/deploy.lock && echo unlocked").strip()


def test_redeploying_the_current_version_changes_nothing(box: Sandbox, target) -> None:
    run = box.deploy(V2, limit=target.name)
    assert run.rc == 0, run.explain()
    assert run.total("changed") == 0, run.explain()


def test_deploy_check_reports_changes_but_changes_nothing(box: Sandbox, target) -> None:
    run = box.deploy(BROKEN, limit=target.name, check=True)
    assert run.rc == 0, run.explain()
    assert run.total("changed") > 0
    assert root_run(target, "readlink /opt/iris/current").strip() == f"releases/{V2}"
    assert root_run(target, f"test ! -e /opt/iris/releases/{BROKEN} && echo absent").strip()
    assert root_run(target, "test ! -e /var/lib/iris/deploy.lock && echo unlocked").strip()


def test_cache_and_service_survive_a_host_reboot(box: Sandbox, target) -> None:
    before = cache_files(target)
    boot_id = root_run(target, "cat /proc/sys/kernel/random/boot_id")
    hosts.reboot(target.name)
    assert root_run(target, "cat /proc/sys/kernel/random/boot_id") != boot_id
    assert wait_healthy(target, box.pebble_roots, V2).status == 200
    assert cache_files(target) == before
    assert_cache_hit(box, target)


# A client as patient as nginx itself: while a never-answering release holds the service's socket,
# a request waits there until the rollback's release serves it, up to the sandbox's gate wait and
# more; that is a slow answer, not a failed one, as long as nginx is still waiting too.
NGINX_READ_TIMEOUT_S = yaml.safe_load(
    (project_root() / "roles/nginx/defaults/main.yml").read_text()
)["nginx_proxy_read_timeout"]


class Traffic:
    """Health requests through nginx, one after another, until stopped; every answer kept."""

    def __init__(self, box: Sandbox, host) -> None:
        self.box, self.host = box, host
        self.answers: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ask, daemon=True)

    def _ask(self) -> None:
        while not self._stop.is_set():
            answer = https(
                self.host, "/api/iris/health", self.box.pebble_roots, timeout=NGINX_READ_TIMEOUT_S
            )
            self.answers.append(answer.status)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=NGINX_READ_TIMEOUT_S + 30)

    @property
    def failed(self) -> list[int]:
        return [status for status in self.answers if status != 200]


ROLLBACK_SECONDS = re.compile(r"\(healthy again\) ([0-9.]+) s after the switch")
# A release that never answers is recognised only when the gate's wait ends; the rollback and
# the previous release's own start come on top.
GATE_WAIT_S = yaml.safe_load(
    (project_root() / "inventory/sandbox/group_vars/iris.yml").read_text()
)["release_health_timeout"]
ROLLBACK_LIMIT_S = GATE_WAIT_S + 10


@pytest.mark.parametrize(
    ("version", "own_words"),
    [(BROKEN, "deliberately broken release"), (DYING, "SIGKILL"), (HANGING, "no health answer")],
    ids=[BREAKAGES[v] for v in (BROKEN, DYING, HANGING)],
)
def test_broken_release_is_rolled_back_fast_and_explained(
    box: Sandbox, target, version: str, own_words: str
) -> None:
    failure = GATE_FAILURE[BREAKAGES[version]]
    started = time.monotonic()
    with Traffic(box, target) as traffic:
        run = box.deploy(version, limit=target.name)
    assert run.rc != 0
    message = "\n".join(run.messages)
    assert f"release {version} failed its health gate ({failure})" in message, message
    assert f"rolled back to {V2} (healthy again)" in message, message
    assert own_words in message, message  # the release's own error lines say why
    seconds = float(ROLLBACK_SECONDS.search(message)[1])  # type: ignore[index]
    assert seconds <= ROLLBACK_LIMIT_S, message
    assert traffic.answers and not traffic.failed, traffic.answers
    assert wait_healthy(target, box.pebble_roots, V2, timeout=10).status == 200
    assert root_run(target, "readlink /opt/iris/current").strip() == f"releases/{V2}"
    assert root_run(target, f"test ! -e /opt/iris/releases/{version} && echo gone").strip()
    assert root_run(target, "test ! -e /var/lib/iris/deploy.lock && echo unlocked").strip()
    box.timings[f"{failure} deploy + rollback"] = time.monotonic() - started
    box.timings[f"{failure} switch to rolled back"] = seconds


def test_deploy_is_refused_while_locked_and_unlock_removes_the_lock(box: Sandbox, target) -> None:
    lock = '{"holder": "bob@laptop", "since": "2026-01-01T00:00:00Z", "version": "9.9"}'
    root_run(target, f"echo '{lock}' > /var/lib/iris/deploy.lock")
    run = box.deploy(V1, limit=target.name)
    assert run.rc != 0
    assert "deploy locked by bob@laptop since 2026-01-01T00:00:00Z" in "\n".join(run.messages)
    assert root_run(target, "readlink /opt/iris/current").strip() == f"releases/{V2}"
    unlock = box.play("unlock.yml", limit=target.name)
    assert unlock.rc == 0, unlock.explain()
    assert "removed: true" in unlock.output and "holder: bob@laptop" in unlock.output
    assert root_run(target, "test ! -e /var/lib/iris/deploy.lock && echo unlocked").strip()


def test_force_unlock_takes_over_a_stale_lock(box: Sandbox, target) -> None:
    lock = '{"holder": "bob@laptop", "since": "2026-01-01T00:00:00Z", "version": "9.9"}'
    root_run(target, f"echo '{lock}' > /var/lib/iris/deploy.lock")
    run = box.deploy(V2, limit=target.name, iris_deploy_force_unlock=True)
    assert run.rc == 0, run.explain()
    assert root_run(target, "test ! -e /var/lib/iris/deploy.lock && echo unlocked").strip()


def test_rollback_returns_to_the_previous_release(box: Sandbox, target) -> None:
    run = box.play("rollback.yml", limit=target.name)
    assert run.rc == 0, run.explain()
    assert wait_healthy(target, box.pebble_roots, V1, timeout=10).status == 200
    assert root_run(target, "readlink /opt/iris/current").strip() == f"releases/{V1}"
    assert_cache_hit(box, target)


def test_site_without_any_release_fails_early(box: Sandbox) -> None:
    other = box.info.hosts[EDGE_HOST]
    run = box.play("site.yml", limit=other.name, service_root="/opt/iris-empty")
    assert run.rc != 0
    assert "No release on" in "\n".join(run.messages)
    assert run.total("changed") == 0


def test_an_environment_the_service_would_refuse_is_never_installed(box: Sandbox, target) -> None:
    before = root_run(target, "sha256sum /etc/iris/iris.env")
    run = box.play("site.yml", limit=target.name, service_iris_env="production")
    assert run.rc != 0
    message = "\n".join(run.messages)
    assert "IRIS_ENV='production' is not one of dev, prod" in message, message
    assert root_run(target, "sha256sum /etc/iris/iris.env") == before
    assert wait_healthy(target, box.pebble_roots, V1, timeout=10).status == 200
