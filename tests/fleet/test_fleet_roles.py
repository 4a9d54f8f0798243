"""The fleet's own roles on converged hosts: cache_store (Redis on the store host) and
load_balancer (HAProxy on the balancer), checked with testinfra, the store's protocol and the
balancer's runtime API. Runs after the stories (test_fleet.py) and leaves the fleet as it found
it: every member enabled, the store on its own password."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import testinfra
import yaml
from fleet_helpers import Fleet, source
from host_helpers import PlaybookRun, https
from irisctl.paths import project_root
from irisctl.sandbox.balancer_member import member_play
from irisctl.sandbox.hosts import Host
from irisctl.sandbox.stack import AWS_REGION, MOTO_URL, STORE_PORT, STORE_SECRET_ID, STORE_USER

SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
ADMIN_SOCKET = "/run/haproxy-admin.sock"  # roles/load_balancer/defaults: load_balancer_admin_socket
SECURITY_LIMIT = 4.9  # issue 12: `systemd-analyze security` 4.9 or lower
ERROR_STATUSES = (400, 403, 408, 500, 502, 503, 504)


# ------------------------------------------------------------------------- helpers ---
def machine(fleet: Fleet, host: Host):
    return testinfra.get_host(
        f"ssh://ec2-user@{host.ip}",
        ssh_identity_file=str(fleet.info.ssh_key),
        ssh_extra_args=SSH_ARGS,
        sudo=True,
    )


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)


def store_password() -> str:
    import boto3

    client = boto3.client(
        "secretsmanager",
        endpoint_url=MOTO_URL,
        region_name=AWS_REGION,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )
    return client.get_secret_value(SecretId=STORE_SECRET_ID)["SecretString"]


def store_client(fleet: Fleet, password: str | None, username: str | None = STORE_USER):
    return redis.Redis(
        host=fleet.store.ip,
        port=STORE_PORT,
        username=username,
        password=password,
        socket_timeout=5,
        socket_connect_timeout=5,
    )


def exposure(host, unit: str) -> float:
    out = host.check_output(f"systemd-analyze security {unit} --no-pager")
    match = re.search(rf"Overall exposure level for {unit}\S*: (\d+\.\d+)", out)
    assert match, out[-500:]
    return float(match.group(1))


def runtime_api(lb, command: str) -> str:
    return lb.check_output(f"echo '{command}' | socat -t 5 stdio UNIX-CONNECT:{ADMIN_SOCKET}")


def backend_rows(lb) -> dict[str, dict[str, str]]:
    """`show stat` of backend iris: one row per server, by server name."""
    lines = runtime_api(lb, "show stat").lstrip("# ").splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: r for r in rows if r["pxname"] == "iris" and r["svname"] != "BACKEND"}


def run_member_play(fleet: Fleet, entry: str, member: str, **extra: object) -> Played:
    """The role's entry point for ``member``, delegated to the balancer as the deploy play does."""
    play = member_play(entry, member, **extra)
    path = fleet.workdir / f"member-{entry}.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(fleet.inventory)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    done = subprocess.run(
        [*argv, str(path)], cwd=project_root(), env=env, capture_output=True, text=True, timeout=600
    )
    return Played(rc=done.returncode, output=done.stdout + done.stderr)


@dataclass(frozen=True)
class Played:
    rc: int
    output: str

    def explain(self) -> str:
        return self.output[-3000:]


# ------------------------------------------------------------------------ fixtures ---
@pytest.fixture(scope="module")
def second_converge(fleet: Fleet) -> PlaybookRun:
    return fleet.play("site.yml", limit="iris_cache_store,iris_balancer")


@pytest.fixture(scope="module")
def store(fleet: Fleet):
    return machine(fleet, fleet.store)


@pytest.fixture(scope="module")
def lb(fleet: Fleet):
    return machine(fleet, fleet.balancer)


@pytest.fixture
def all_members_enabled(fleet: Fleet, lb) -> Iterator[None]:
    yield
    for app in fleet.apps:
        runtime_api(lb, f"set server iris/{app.name} state ready")


# ---------------------------------------------------------------------- both roles ---
def test_store_and_balancer_converge_again_changing_nothing(
    fleet: Fleet, second_converge: PlaybookRun
) -> None:
    assert second_converge.rc == 0, second_converge.explain()
    changed = {name: s["changed"] for name, s in second_converge.stats.items()}
    assert set(changed) == {fleet.store.name, fleet.balancer.name}
    assert changed == dict.fromkeys(changed, 0), second_converge.explain()


@pytest.mark.parametrize(("role", "unit"), [("store", "redis-server"), ("lb", "haproxy")])
def test_unit_is_sandboxed_to_4_9_or_lower(request, role: str, unit: str) -> None:
    host = request.getfixturevalue(role)
    score = exposure(host, unit)
    print(f"\nsystemd-analyze security {unit}: {score}")
    assert score <= SECURITY_LIMIT, f"{unit} exposure {score}"


# --------------------------------------------------------------------- cache store ---
def test_store_listens_on_its_private_address_and_loopback_only(fleet: Fleet, store) -> None:
    listening = {s for s in store.socket.get_listening_sockets() if s.endswith(f":{STORE_PORT}")}
    assert listening == {
        f"tcp://{fleet.store.ip}:{STORE_PORT}",
        f"tcp://127.0.0.1:{STORE_PORT}",
        f"tcp://::1:{STORE_PORT}",
    }


def test_store_host_holds_only_the_passwords_sha256(store) -> None:
    password = store_password()
    acl = store.file("/etc/redis/users.acl")
    assert (acl.user, acl.group, acl.mode) == ("root", "redis", 0o640)
    digest = hashlib.sha256(password.encode()).hexdigest()
    assert acl.content_string.splitlines() == [
        "user default off resetkeys resetchannels -@all",
        f"user iris on #{digest} ~* &* +@all -@admin -@dangerous +info",
    ]
    found = store.run(f"grep -rlF -- {password!r} /etc /var/lib/redis /home /root /tmp")
    assert found.stdout.strip() == "", found.stdout


def test_store_refuses_the_default_user_and_administration(fleet: Fleet) -> None:
    with pytest.raises(redis.AuthenticationError):
        store_client(fleet, None, None).ping()
    with pytest.raises(redis.AuthenticationError):
        store_client(fleet, "not-the-password").ping()
    client = store_client(fleet, store_password())
    assert client.set("roles:probe", "1", ex=60) and client.get("roles:probe") == b"1"
    for command in (("CONFIG", "GET", "maxmemory"), ("FLUSHALL",), ("KEYS", "*"), ("SHUTDOWN",)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)


def test_store_persists_and_caps_memory_with_lru_eviction(fleet: Fleet, store) -> None:
    info = store_client(fleet, store_password()).info()
    assert info["aof_enabled"] == 1
    assert info["maxmemory_policy"] == "allkeys-lru"
    total_kib = int(re.search(r"MemTotal:\s+(\d+)", store.file("/proc/meminfo").content_string)[1])
    assert info["maxmemory"] == (total_kib // 1024 * 25 // 100) * 1024 * 1024
    conf = store.file("/etc/redis/redis.conf").content_string
    assert "appendfsync everysec" in conf.splitlines()
    assert re.search(r"^save \d+ \d+$", conf, re.MULTILINE)
    assert "protected-mode yes" in conf.splitlines()


def test_store_restarts_after_a_crash_with_its_data(fleet: Fleet, store) -> None:
    client = store_client(fleet, store_password())
    client.set("roles:crash", "kept", ex=600)
    aof = "/var/lib/redis/appendonlydir"
    wait_until(
        "the write reaches the append-only file",
        lambda: "roles:crash" in store.run(f"cat {aof}/*.incr.aof").stdout,
    )
    before = store.service("redis-server").systemd_properties["MainPID"]
    store.run_expect([0], f"kill -9 {before}")

    def back() -> bool:
        pid = store.service("redis-server").systemd_properties["MainPID"]
        return pid not in ("0", before) and store.service("redis-server").is_running

    wait_until("redis-server is restarted by systemd", back)
    wait_until("the store answers again", lambda: _answers(fleet))
    assert store_client(fleet, store_password()).get("roles:crash") == b"kept"


def _answers(fleet: Fleet) -> bool:
    try:
        return bool(store_client(fleet, store_password()).ping())
    except redis.ConnectionError:
        return False


def test_a_changed_password_takes_effect_and_the_data_stays(fleet: Fleet) -> None:
    original = store_password()
    store_client(fleet, original).set("roles:password", "kept", ex=600)
    try:
        changed = fleet.play("site.yml", limit="iris_cache_store", cache_store_password="rotated-1")
        assert changed.rc == 0, changed.explain()
        # the ACL file, and the restart it calls for (the store reads it at start only)
        assert changed.total("changed") == 2, changed.explain()
        assert "rotated-1" not in changed.output
        with pytest.raises(redis.AuthenticationError):
            store_client(fleet, original).ping()
        assert store_client(fleet, "rotated-1").get("roles:password") == b"kept"
    finally:
        restored = fleet.play("site.yml", limit="iris_cache_store")
    assert restored.rc == 0, restored.explain()
    assert store_client(fleet, original).get("roles:password") == b"kept"


# ------------------------------------------------------------------- load balancer ---
def test_balancer_redirects_http_to_https_except_acme_challenges(fleet: Fleet) -> None:
    plain = https(fleet.balancer, "/api/iris/health", fleet.pebble_roots, scheme="http")
    assert plain.status == 301
    assert f"location: https://{fleet.balancer.fqdn}/api/iris/health" in plain.headers.lower()
    challenge = https(
        fleet.balancer, "/.well-known/acme-challenge/x", fleet.pebble_roots, scheme="http"
    )
    assert challenge.status != 301  # goes to certbot's standalone port (not running now)


def test_balancer_serves_its_acme_certificate_and_forwards_to_healthy_hosts(fleet: Fleet) -> None:
    context = ssl.create_default_context(cafile=str(fleet.pebble_roots))
    with (
        socket.create_connection((fleet.balancer.ip, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=fleet.balancer.fqdn) as tls,
    ):
        names = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
    assert names == [fleet.balancer.fqdn]
    answer = https(fleet.balancer, "/api/iris/health", fleet.pebble_roots)
    assert answer.status == 200, answer.body
    assert "strict-transport-security: max-age=63072000" in answer.headers.lower()


def test_every_app_host_is_a_server_checked_over_verified_tls(fleet: Fleet, lb) -> None:
    rows = backend_rows(lb)
    assert set(rows) == {app.name for app in fleet.apps}
    for row in rows.values():
        assert (row["status"], row["check_status"], row["check_code"]) == ("UP", "L7OK", "200")
    config = lb.file("/etc/haproxy/haproxy.cfg").content_string
    for app in fleet.apps:
        line = next(x for x in config.splitlines() if x.strip().startswith(f"server {app.name} "))
        assert f"{app.ip}:443" in line and f"sni str({app.fqdn})" in line, line
        assert f"verifyhost {app.fqdn}" in line, line
    assert re.search(r"default-server .*check inter 1000 fall 2 rise 2 ssl verify required", config)
    assert "http-check send meth GET uri /api/iris/health" in config


def test_runtime_api_socket_is_for_root_only(lb) -> None:
    sock = lb.file(ADMIN_SOCKET)
    assert sock.is_socket and (sock.user, sock.group, sock.mode) == ("root", "root", 0o600)
    denied = lb.run(f"sudo -u ec2-user socat -t 2 stdio UNIX-CONNECT:{ADMIN_SOCKET} </dev/null")
    assert denied.rc != 0 and "Permission denied" in denied.stderr


def test_haproxys_own_errors_are_json(fleet: Fleet, lb, all_members_enabled: None) -> None:
    for status in ERROR_STATUSES:
        raw = lb.file(f"/etc/haproxy/errors-json/{status}.http").content_string
        head, _, body = raw.partition("\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ") and "Content-Type: application/json" in head
        assert f"Content-Length: {len(body)}" in head
        assert body.startswith('{"success":false,"error":"')
    # no server to send it to
    for app in fleet.apps:
        runtime_api(lb, f"set server iris/{app.name} state maint")
    unavailable = https(fleet.balancer, "/api/iris/health", fleet.pebble_roots)
    assert unavailable.status == 503
    headers = unavailable.headers.lower()
    assert "content-type: application/json" in headers and "retry-after: 5" in headers
    assert unavailable.json() == {"success": False, "error": "The IRIS backend is unavailable"}


def test_drain_waits_for_the_request_in_flight_then_enable_waits_for_health(
    fleet: Fleet, lb, all_members_enabled: None
) -> None:
    answers: list[tuple[int, float]] = []

    def slow_request() -> None:
        status, _ = fleet.analyze(fleet.balancer, source(f"drain-{time.time()}", delay_s=10), 60)
        answers.append((status, time.monotonic()))

    slow = threading.Thread(target=slow_request)
    slow.start()
    busy: list[str] = []

    def found_busy() -> bool:
        busy[:] = [name for name, row in backend_rows(lb).items() if row["scur"] != "0"]
        return bool(busy)

    wait_until("the slow request reaches a server", found_busy)
    member = busy[0]
    started = time.monotonic()
    drained = run_member_play(fleet, "drain", member)
    ended = time.monotonic()
    assert drained.rc == 0, drained.explain()
    slow.join(timeout=60)
    # answered (200, not cut off) while the drain was still waiting for it, well after it began
    ((status, answered),) = answers
    assert status == 200
    assert started + 2 < answered < ended
    assert backend_rows(lb)[member]["status"] == "MAINT"
    enabled = run_member_play(fleet, "enable", member)
    assert enabled.rc == 0, enabled.explain()
    row = backend_rows(lb)[member]
    assert (row["status"], row["check_status"]) == ("UP", "L7OK")


def test_enable_fails_clearly_and_sends_nothing_while_the_member_is_unhealthy(
    fleet: Fleet, lb, all_members_enabled: None
) -> None:
    member = fleet.apps[-1]
    app = machine(fleet, member)
    assert run_member_play(fleet, "drain", member.name).rc == 0
    app.run_expect([0], "systemctl stop nginx")
    try:
        failed = run_member_play(fleet, "enable", member.name, load_balancer_enable_timeout_s=5)
        assert failed.rc != 0
        assert f"enable iris/{member.name} failed: not up after about 5 s" in failed.output
        assert backend_rows(lb)[member.name]["status"].startswith("DOWN")
        assert https(fleet.balancer, "/api/iris/health", fleet.pebble_roots).status == 200
    finally:
        app.run_expect([0], "systemctl start nginx")
    assert run_member_play(fleet, "enable", member.name).rc == 0
    assert backend_rows(lb)[member.name]["status"] == "UP"


def test_drain_refuses_a_host_outside_the_backend(fleet: Fleet) -> None:
    refused = run_member_play(fleet, "drain", fleet.store.name)
    assert refused.rc != 0
    assert f"drain: '{fleet.store.name}' is not a host of group iris" in refused.output


def test_certificate_renews_through_haproxys_challenge_route(fleet: Fleet, lb) -> None:
    renew = lb.run(
        "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt certbot renew --dry-run"
        f" --no-random-sleep-on-renew --server {fleet.info.pebble_directory}"
    )
    assert renew.rc == 0, renew.stdout[-800:] + renew.stderr[-800:]
    assert "all simulated renewals succeeded" in renew.stdout + renew.stderr
    hook = lb.file("/etc/letsencrypt/renewal-hooks/deploy/haproxy-certificate")
    assert hook.mode == 0o755
    assert lb.run_expect([0], str(hook.path)).stdout.strip() == "unchanged"


def test_a_changed_setting_reloads_haproxy_without_restarting_it(fleet: Fleet, lb) -> None:
    pid = lb.service("haproxy").systemd_properties["MainPID"]
    errors = "/etc/haproxy/errors-json/503.http"
    try:
        changed = fleet.play("site.yml", limit="iris_balancer", load_balancer_retry_after_s=7)
        assert changed.rc == 0, changed.explain()
        assert "Retry-After: 7\r\n" in lb.file(errors).content_string
        assert "RUNNING HANDLER [load_balancer : Reload HAProxy]" in changed.output
        assert "RUNNING HANDLER [load_balancer : Restart HAProxy]" not in changed.output
        assert lb.service("haproxy").systemd_properties["MainPID"] == pid  # the same master
    finally:
        restored = fleet.play("site.yml", limit="iris_balancer")
    assert restored.rc == 0, restored.explain()
    assert "Retry-After: 5\r\n" in lb.file(errors).content_string
    assert https(fleet.balancer, "/api/iris/health", fleet.pebble_roots).status == 200
