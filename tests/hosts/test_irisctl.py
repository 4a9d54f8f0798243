"""irisctl end to end against a real sandbox host: the console script, real plays, real exit codes.

The irisctl host is one of the session's sandbox hosts, converged with the others (at V1); every
command is limited to it (`irisctl --limit`), so the other hosts' stories are not touched. Order
matters (one host, one story): provision, deploy a second version, releases, rollback, restart,
logs, the deploy lock, a failed deploy, cache after real analyses, cache clear, a cache backup to
S3 (moto) restored into the wiped cache, the daily backup timer, health healthy then unhealthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from host_helpers import IRISCTL_HOST, V1, Sandbox, https
from irisctl.errors import EXIT_FAILED, EXIT_LOCKED
from irisctl.sandbox import hosts, stack
from irisctl.sandbox.broken_releases import build_broken_release
from irisctl.sandbox.hosts import Host

IRISCTL = str(Path(sys.executable).parent / "irisctl")
# The second version of this story (built by `irisctl` itself); V1 is the converged one.
V2 = "1.0.1"
SOURCES = {
    "a.py": "def add(a, b):\n    return a + b\n",
    "b.py": "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "c.js": "export function greet(name) { return `hi ${name}`; }\n",
}
LANGUAGE = {".py": "python", ".js": "javascript"}
# Operator settings that must not leak into the tests' irisctl runs.
OPERATOR_ENV = ("IRISCTL_INVENTORY", "IRISCTL_CONFIG", "IRISCTL_CA_BUNDLE", "IRISCTL_DEBUG")
# Hosts have Python, not curl: a health request made on the host itself.
HEALTH_FROM_THE_HOST = (
    "python3 -c 'import urllib.request as u; "
    'u.urlopen("http://127.0.0.1:8080/api/iris/health", timeout=10).read()\''
)


class Operator:
    """An operator at a shell: `irisctl --limit <the irisctl host> ...` on the sandbox inventory."""

    def __init__(self, sandbox: Sandbox, home: Path) -> None:
        self.sandbox = sandbox
        self.host: Host = sandbox.info.hosts[IRISCTL_HOST]
        env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENV}
        # No operator config or cache leaks in (irisctl reads both from HOME / XDG dirs).
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_CACHE_HOME=str(home / ".cache"),
            IRISCTL_INVENTORY=str(sandbox.inventory),
        )
        self.env = env

    def argv(self, *args: str) -> list[str]:
        return [IRISCTL, "--limit", self.host.name, *args]

    def irisctl(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def json(self, *args: str) -> Any:
        done = self.irisctl(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def ssh(self, command: str) -> None:
        subprocess.run([*hosts.ssh_command(self.host, "root"), command], check=True, timeout=60)

    def ssh_output(self, command: str) -> str:
        argv = [*hosts.ssh_command(self.host, "root"), command]
        return subprocess.run(
            argv, check=True, timeout=60, capture_output=True, text=True
        ).stdout.strip()

    def irisctl_ok(self, *args: str) -> list[str]:
        done = self.irisctl(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def wait_until_no_reader(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        argv = [*hosts.ssh_command(self.host, "root"), "pgrep -f 'iris_log[s].py' || true"]
        while subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip():
            assert time.monotonic() < deadline, "the log reader outlived its ssh session"
            time.sleep(0.2)

    def analyze(self, name: str, source: str) -> dict[str, Any]:
        """One analysis through nginx, TLS verified against the sandbox's ACME root."""
        body = {"filename": name, "language": LANGUAGE[Path(name).suffix], "source_code": source}
        answer = https(
            self.host, "/api/iris/analyze", self.sandbox.pebble_roots, method="POST", body=body
        )
        assert answer.status == 200, answer.body
        return answer.json()


@pytest.fixture(scope="module")
def box(converged: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Operator:
    return Operator(converged, tmp_path_factory.mktemp("operator-home"))


def test_provision_then_deploy_a_second_version(box: Operator) -> None:
    done = box.irisctl("provision", "--version", V1)
    assert done.returncode == 0, done.stderr
    summary = box.json("deploy", "--version", V2)
    assert summary["version"] == V2
    assert summary["serving"] == {box.host.name: V2}
    assert summary["healthy"] is True


def test_deploy_check_changes_nothing(box: Operator) -> None:
    data = box.json("deploy", "--version", V2, "--check")
    assert data["check"] is True
    assert box.json("status")["hosts"][0]["version"] == V2


def test_releases_lists_both_with_current_marked(box: Operator) -> None:
    (host,) = box.json("releases")["hosts"]
    assert host["current"] == V2
    versions = {r["version"]: r["current"] for r in host["releases"]}
    assert versions[V2] is True and versions[V1] is False


def test_rollback_defaults_to_the_previous_release(box: Operator) -> None:
    summary = box.json("rollback")
    assert summary["serving"] == {box.host.name: V1}
    assert summary["healthy"] is True
    assert box.json("releases")["hosts"][0]["current"] == V1


def test_restart_keeps_the_service_healthy(box: Operator) -> None:
    done = box.irisctl("restart")
    assert done.returncode == 0, done.stderr
    assert box.json("status")["hosts"][0]["service"]["state"] == "active"


def test_logs_show_what_the_service_wrote_by_default(box: Operator) -> None:
    records = [json.loads(line) for line in box.irisctl_ok("logs", "--lines", "3", "--json")]
    assert 0 < len(records) <= 3
    assert {r["source"] for r in records} <= {"access", "error"}
    assert all(r["host"] == box.host.name and r["time"] for r in records), records
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
    journal = box.irisctl_ok("logs", "--unit", "nginx", "--lines", "2", "--since", "1h", "--json")
    assert all(json.loads(line)["source"] == "nginx.service" for line in journal)


def test_logs_follow_streams_new_requests_and_stops_on_sigterm(box: Operator) -> None:
    follow = subprocess.Popen(
        box.argv("logs", "--follow", "--json", "--lines", "0", "--grep", "health"),
        env=box.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in follow.stdout], daemon=True).start()
        deadline = time.monotonic() + 120
        record = None
        while record is None:  # request until the follow, once connected, shows one
            assert time.monotonic() < deadline and follow.poll() is None, follow.stderr.read()
            box.ssh(HEALTH_FROM_THE_HOST)
            with contextlib.suppress(queue.Empty):
                record = json.loads(lines.get(timeout=2))
        assert record["source"] == "access" and "/api/iris/health" in record["line"]
        started = time.monotonic()
        follow.send_signal(signal.SIGTERM)
        assert follow.wait(timeout=10) == 143
        assert time.monotonic() - started < 1.0
    finally:
        follow.kill()
        follow.wait()
    # nothing left on the host either: the reader ends with its ssh session
    box.wait_until_no_reader()


def test_deploy_lock_names_holder_and_can_be_released(box: Operator) -> None:
    lock = '{"holder": "bob@laptop", "since": "2026-01-01T00:00:00Z", "version": "9.9"}'
    box.ssh(f"mkdir -p /var/lib/iris && echo '{lock}' > /var/lib/iris/deploy.lock")
    done = box.irisctl("deploy", "--version", V1)
    assert done.returncode == EXIT_LOCKED
    assert "by bob@laptop since 2026-01-01T00:00:00Z" in done.stderr
    assert "Traceback" not in done.stderr
    assert "building release" not in done.stderr  # refused before anything was built
    done = box.irisctl("unlock")
    assert done.returncode == 0, done.stderr
    assert "held by bob@laptop since 2026-01-01T00:00:00Z" in done.stdout
    assert " s old)" in done.stdout


def test_two_deploys_started_together_exactly_one_proceeds(box: Operator) -> None:
    argv = box.argv("deploy", "--version", V1, "--json")
    racers = [
        subprocess.Popen(
            argv, env=box.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outcomes = [(racer.wait(timeout=900), *racer.communicate()) for racer in racers]
    codes = sorted(code for code, _out, _err in outcomes)
    assert codes == [0, EXIT_LOCKED], outcomes
    refused = next(json.loads(out) for code, out, _err in outcomes if code == EXIT_LOCKED)
    assert refused["lock"]["holder"] and refused["lock"]["version"] == V1
    assert box.json("status")["hosts"][0]["version"] == V1
    assert box.ssh_output("test -e /var/lib/iris/deploy.lock && echo held || echo free") == "free"


def test_failed_deploy_reports_the_release_own_error_lines_as_json(
    box: Operator, tmp_path: Path
) -> None:
    broken = build_broken_release(tmp_path / "release", "9.9.9", "fails-at-import").path
    done = box.irisctl("deploy", "--from", str(broken), "--json")
    assert done.returncode == EXIT_FAILED, done.stderr
    data = json.loads(done.stdout)
    assert data["failed_release"] == "9.9.9" and data["failure"] == "exits_at_start"
    assert data["rolled_back_to"] == V1 and data["healthy_again"] is True
    assert any("deliberately broken release" in line for line in data["error_lines"]), data
    assert any("Traceback" in line for line in data["error_lines"]), data
    assert "deliberately broken release" in done.stderr
    assert box.json("status")["hosts"][0]["version"] == V1


def test_cache_stats_count_real_analyses(box: Operator, tmp_path: Path) -> None:
    done = box.irisctl("cache", "clear", "--yes")
    assert done.returncode == 0, done.stderr
    before = box.json("cache", "stats")["hosts"][0]
    for name, source in SOURCES.items():
        box.analyze(name, source)
    box.analyze("a.py", SOURCES["a.py"])  # the same source again: a cache hit
    stats = box.json("cache", "stats")["hosts"][0]
    assert stats["entries"] == len(SOURCES)
    assert stats["model_calls"] - before["model_calls"] == len(SOURCES)
    assert stats["hits"] - before["hits"] == 1
    assert stats["cost_spent_usd"] > before["cost_spent_usd"]
    assert stats["cost_saved_usd"] > before["cost_saved_usd"]
    local = tmp_path / "a.py"
    local.write_text(SOURCES["a.py"])
    (found,) = box.json("cache", "inspect", str(local))["hosts"]
    assert found["found"] is True and found["key"]
    missing = tmp_path / "new.py"
    missing.write_text("print('never analysed')\n")
    assert box.irisctl("cache", "inspect", str(missing)).returncode == EXIT_FAILED


def test_cache_clear_removes_everything(box: Operator) -> None:
    (cleared,) = box.json("cache", "clear", "--yes")["hosts"]
    assert cleared["removed"] == len(SOURCES)
    assert box.json("cache", "stats")["hosts"][0]["entries"] == 0


def sandbox_s3() -> Any:
    """The sandbox's S3 (moto), read with boto3 from outside the hosts."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=stack.MOTO_URL,
        region_name=stack.AWS_REGION,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )


def backup_keys() -> set[str]:
    pages = sandbox_s3().get_paginator("list_objects_v2").paginate(Bucket=stack.BACKUP_BUCKET)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def head_backup(key: str) -> dict[str, Any]:
    return sandbox_s3().head_object(Bucket=stack.BACKUP_BUCKET, Key=key)


def test_cache_backup_then_restore_into_the_wiped_cache_is_a_hit(
    box: Operator, tmp_path: Path
) -> None:
    box.json("cache", "clear", "--yes")
    assert box.analyze("b.py", SOURCES["b.py"])["metadata"]["cache_hit"] == 0
    (backup,) = box.json("cache", "backup")["hosts"]
    assert backup["entries"] == 1 and backup["bucket"] == stack.BACKUP_BUCKET
    head = head_backup(backup["key"])
    assert head["Metadata"]["entries"] == "1" and head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == backup["bytes"]
    (listed,) = box.json("cache", "backups")["hosts"]
    assert listed["backups"][0]["id"] == backup["id"] and listed["backups"][0]["entries"] == 1

    local = tmp_path / "b.py"
    local.write_text(SOURCES["b.py"])
    assert box.json("cache", "clear", "--yes")["hosts"][0]["removed"] == 1
    assert box.irisctl("cache", "inspect", str(local)).returncode == EXIT_FAILED
    (restored,) = box.json("cache", "restore", "--yes")["hosts"]
    assert restored["id"] == backup["id"] and restored["restored"] == 1
    assert box.json("cache", "inspect", str(local))["hosts"][0]["found"] is True
    model_calls = box.json("cache", "stats")["hosts"][0]["model_calls"]
    assert box.analyze("b.py", SOURCES["b.py"])["metadata"]["cache_hit"] == 1
    assert box.json("cache", "stats")["hosts"][0]["model_calls"] == model_calls


def test_the_daily_backup_timer_is_active_and_its_run_makes_a_backup(box: Operator) -> None:
    assert box.ssh_output("systemctl is-active iris-cache-backup.timer") == "active"
    hostname = box.ssh_output("hostname")
    before = backup_keys()
    box.ssh("systemctl start iris-cache-backup.service")  # oneshot: returns when it has run
    result = box.ssh_output("systemctl show -p Result --value iris-cache-backup.service")
    assert result == "success"
    (new,) = backup_keys() - before
    assert new.endswith(f"-{hostname}.tar.gz")
    assert head_backup(new)["Metadata"]["entries"] == "1"


def test_health_is_exit_0_then_1_when_the_service_is_stopped(box: Operator) -> None:
    done = box.irisctl("health")
    assert done.returncode == 0, done.stdout + done.stderr
    # The socket unit would start the service again on the next connection (that is what
    # keeps restarts free of failed requests): a stopped service means both units stopped.
    box.ssh("systemctl stop iris-backend.socket iris-backend.service")
    try:
        done = box.irisctl("health", "--json")
        assert done.returncode == EXIT_FAILED
        data = json.loads(done.stdout)
        failing = {c["name"] for c in data["hosts"][0]["checks"] if not c["ok"]}
        assert {"service", "local_endpoint", "public_endpoint"} <= failing
        assert done.stderr.startswith("error: unhealthy:")
    finally:
        assert box.irisctl("restart").returncode == 0
