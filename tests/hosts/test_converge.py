"""converge -> idempotence -> verify: site.yml from a bare Debian 12 host, as ec2-user with sudo."""

from __future__ import annotations

import re
import time

import pytest
import testinfra
from host_helpers import V1, VERIFIED_HOSTS, Sandbox, https, served_certificate
from irisctl.sandbox.hosts import Host

SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"


@pytest.fixture(scope="session", params=VERIFIED_HOSTS, ids=lambda i: f"host{i + 1}")
def host(request: pytest.FixtureRequest, converged: Sandbox) -> tuple[Host, object]:
    target = converged.info.hosts[request.param]
    machine = testinfra.get_host(
        f"ssh://ec2-user@{target.ip}",
        ssh_identity_file=str(converged.info.ssh_key),
        ssh_extra_args=SSH_ARGS,
        sudo=True,
    )
    return target, machine


def test_first_converge_succeeds_on_every_host(converged: Sandbox) -> None:
    first = converged.converges[0]
    assert first.rc == 0, first.explain()
    assert set(first.stats) == {h.name for h in converged.info.hosts}
    assert all(s["failed"] == 0 and s["unreachable"] == 0 for s in first.stats.values())
    assert first.total("changed") > 0


def test_second_converge_changes_nothing(converged: Sandbox) -> None:
    second = converged.converges[1]
    assert second.rc == 0, second.explain()
    changed = {name: s["changed"] for name, s in second.stats.items()}
    assert changed == dict.fromkeys(changed, 0), second.explain()


def test_services_are_enabled_and_running(host) -> None:
    _, machine = host
    for unit in ("iris-backend", "iris-backend.socket", "nginx", "certbot.timer"):
        service = machine.service(unit)
        assert service.is_enabled, unit
        assert service.is_running, unit


def test_nginx_listens_publicly_and_gunicorn_only_on_loopback(host) -> None:
    _, machine = host
    assert machine.socket("tcp://0.0.0.0:80").is_listening
    assert machine.socket("tcp://0.0.0.0:443").is_listening
    for port in (8080, 8081):  # analyses, health checks
        assert machine.socket(f"tcp://127.0.0.1:{port}").is_listening
        listening = [s for s in machine.socket.get_listening_sockets() if s.endswith(f":{port}")]
        assert listening == [f"tcp://127.0.0.1:{port}"]


@pytest.mark.parametrize(
    ("path", "user", "group", "mode"),
    [
        ("/etc/iris/iris.env", "root", "root", 0o600),
        ("/etc/iris/gunicorn.conf.py", "root", "iris", 0o640),
        ("/etc/systemd/system/iris-backend.service", "root", "root", 0o644),
        ("/var/iris", "iris", "iris", 0o750),
        ("/var/log/iris", "iris", "iris", 0o750),
        (f"/opt/iris/releases/{V1}", "root", "root", 0o755),
        ("/etc/logrotate.d/iris", "root", "root", 0o644),
    ],
)
def test_files_have_their_owner_and_mode(host, path: str, user: str, group: str, mode: int) -> None:
    _, machine = host
    f = machine.file(path)
    assert f.exists, path
    assert (f.user, f.group, f.mode) == (user, group, mode)


def test_release_layout_and_service_config(host) -> None:
    _, machine = host
    current = machine.file("/opt/iris/current")
    assert current.is_symlink and current.linked_to == f"/opt/iris/releases/{V1}"
    assert machine.file(f"/opt/iris/releases/{V1}/venv/bin/gunicorn").exists
    assert machine.file(f"/opt/iris/releases/{V1}/wheels").is_directory
    env = machine.file("/etc/iris/iris.env").content_string
    assert "OPENAI_API_KEY" not in env
    assert 'IRIS_CACHE_DIR="/var/iris"' in env
    conf = machine.file("/etc/iris/gunicorn.conf.py").content_string
    assert conf.splitlines()[2].startswith("from iris_service.gunicorn_conf import *")
    unit = machine.file("/etc/systemd/system/iris-backend.service").content_string
    assert "Type=notify" in unit and "User=iris" in unit


def test_unit_exposure_score_is_at_most_4_9(host) -> None:
    _, machine = host
    out = machine.check_output("systemd-analyze security --no-pager iris-backend.service")
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert score <= 4.9, out.splitlines()[-1]


def test_certificate_is_issued_by_pebble_and_served_by_nginx(host, converged: Sandbox) -> None:
    target, machine = host
    cert = served_certificate(target, converged.pebble_roots)  # verifies chain and name
    issuer = dict(item[0] for item in cert["issuer"])
    assert "Pebble" in issuer["commonName"]
    names = [value for kind, value in cert["subjectAltName"] if kind == "DNS"]
    assert names == [target.fqdn]
    assert machine.file(f"/etc/letsencrypt/live/{target.fqdn}/fullchain.pem").exists


def test_http_redirects_to_https_except_acme_challenges(host, converged: Sandbox) -> None:
    target, machine = host
    answer = https(target, "/api/iris/health?x=1", converged.pebble_roots, scheme="http")
    assert answer.status == 301
    assert f"location: https://{target.fqdn}/api/iris/health?x=1" in answer.headers.lower()
    written = machine.run("echo token > /var/www/letsencrypt/.well-known/acme-challenge/probe")
    assert written.rc == 0, written.stderr
    try:
        probe = https(
            target, "/.well-known/acme-challenge/probe", converged.pebble_roots, scheme="http"
        )
        assert (probe.status, probe.body.strip()) == (200, "token"), probe
    finally:
        machine.run("rm -f /var/www/letsencrypt/.well-known/acme-challenge/probe")


def test_health_answers_200_over_tls_through_nginx(host, converged: Sandbox) -> None:
    target, _ = host
    answer = https(target, "/api/iris/health", converged.pebble_roots)
    assert answer.status == 200, answer.body
    assert answer.json()["version"] == V1
    assert "strict-transport-security: max-age=63072000" in answer.headers.lower()


def test_tls_protocols_follow_mozilla_intermediate(host, converged: Sandbox) -> None:
    target, _ = host
    import socket
    import ssl

    def handshake(version: ssl.TLSVersion) -> bool:
        context = ssl.create_default_context(cafile=str(converged.pebble_roots))
        context.minimum_version = context.maximum_version = version
        try:
            with (
                socket.create_connection((target.ip, 443), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=target.fqdn),
            ):
                return True
        except ssl.SSLError:
            return False

    assert handshake(ssl.TLSVersion.TLSv1_3)
    assert handshake(ssl.TLSVersion.TLSv1_2)


def test_certbot_renew_dry_run_succeeds(host, converged: Sandbox) -> None:
    _, machine = host
    result = machine.run(
        "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt certbot renew --dry-run "
        f"--no-random-sleep-on-renew --server {converged.info.pebble_directory}"
    )
    assert result.rc == 0, result.stderr
    assert "renewals succeeded" in (result.stdout + result.stderr).lower()


def test_deploy_hook_reloads_nginx(host) -> None:
    _, machine = host
    hook = machine.file("/etc/letsencrypt/renewal-hooks/deploy/reload-nginx")
    assert hook.mode == 0o755
    assert machine.run(hook.path).rc == 0
    # Leave the host as the next story expects it: the reload finished, no old worker left that
    # could still accept a connection and then close it (curl: "HTTP2 framing layer").
    deadline = time.monotonic() + 30
    # "[g]": the pattern must not match the shell that runs pgrep (its command line holds it)
    while machine.run("pgrep -f 'nginx: worker process is shuttin[g] down'").rc == 0:
        assert time.monotonic() < deadline, "nginx's old workers still shutting down after 30 s"
        time.sleep(0.2)
