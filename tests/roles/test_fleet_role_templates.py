"""The cache_store and load_balancer roles' templates rendered by ansible itself, host-free: the
store's configuration and ACL file, HAProxy's configuration for a two-host fleet."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from irisctl.paths import project_root
from role_helpers import render_role_template, run_play, shared_schema

ROLES = project_root() / "roles"
FLEET_INVENTORY = """\
[iris]
app-1 ansible_host=10.0.0.11 iris_domain=app-1.example.test
app-2 ansible_host=10.0.0.12 iris_domain=app-2.example.test

[iris_balancer]
lb ansible_connection=local ansible_become=false iris_domain=lb.example.test
"""


def render_for_balancer(tmp_path: Path, template: str, **extra: object) -> str:
    """Render a load_balancer template as the balancer of FLEET_INVENTORY would."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(FLEET_INVENTORY)
    dest = tmp_path / "rendered"
    play = [
        {
            "name": "Render for the balancer",
            "hosts": "iris_balancer",
            "gather_facts": False,
            "vars_files": [
                str(ROLES / "load_balancer" / "defaults" / "main.yml"),
                str(ROLES / "load_balancer" / "vars" / "main.yml"),
                str(ROLES / "load_balancer" / "vars" / "Debian.yml"),
            ],
            "tasks": [
                {
                    "name": "Render",
                    "ansible.builtin.template": {
                        "src": str(ROLES / "load_balancer" / "templates" / template),
                        "dest": str(dest),
                        "mode": "0644",
                    },
                    "vars": {
                        "load_balancer_chroot_dir": "{{ __load_balancer_chroot_dir }}",
                        "load_balancer_user": "{{ __load_balancer_user }}",
                        "load_balancer_system_ca_file": "{{ __load_balancer_system_ca_file }}",
                    },
                }
            ],
        }
    ]
    done = run_play(tmp_path, play, inventory=str(inventory), **extra)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return dest.read_text()


def lines_of(conf: str, keyword: str) -> list[str]:
    return [x.strip() for x in conf.splitlines() if re.match(rf"{keyword}( |$)", x.strip())]


# ------------------------------------------------------------------------- cache store ---
@pytest.fixture(scope="module")
def store_conf(tmp_path_factory: pytest.TempPathFactory) -> str:
    return render_role_template(
        tmp_path_factory.mktemp("store"),
        "cache_store",
        "redis.conf.j2",
        {
            "ansible_facts": {"memtotal_mb": 4000, "default_ipv4": {"address": "10.0.0.30"}},
            "cache_store_pid_file": "/run/redis/redis-server.pid",
            "cache_store_acl_file": "/etc/redis/users.acl",
            "cache_store_data_dir": "/var/lib/redis",
        },
    )


def test_store_listens_on_the_private_address_and_loopback_only(store_conf: str) -> None:
    assert lines_of(store_conf, "bind") == ["bind 10.0.0.30 127.0.0.1 -::1"]
    assert lines_of(store_conf, "port") == ["port 6379"]
    assert lines_of(store_conf, "protected-mode") == ["protected-mode yes"]


def test_store_caps_memory_at_a_quarter_of_ram_with_lru_eviction(store_conf: str) -> None:
    assert lines_of(store_conf, "maxmemory") == ["maxmemory 1000mb"]
    assert lines_of(store_conf, "maxmemory-policy") == ["maxmemory-policy allkeys-lru"]


def test_store_persists_with_an_append_only_file_and_snapshots(store_conf: str) -> None:
    assert lines_of(store_conf, "appendonly") == ["appendonly yes"]
    assert lines_of(store_conf, "appendfsync") == ["appendfsync everysec"]
    assert lines_of(store_conf, "save") == ["save 3600 1", "save 300 100", "save 60 10000"]
    assert lines_of(store_conf, "aclfile") == ["aclfile /etc/redis/users.acl"]
    assert "requirepass" not in store_conf


def test_store_acl_file_has_the_default_user_off_and_only_the_hash(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    acl = render_role_template(
        tmp_path, "cache_store", "users.acl.j2", {"cache_store_password_sha256": digest}
    )
    # Redis's ACL file takes no comments: every line is a user.
    assert acl.splitlines() == [
        "user default off resetkeys resetchannels -@all",
        f"user iris on #{digest} ~* &* +@all -@admin -@dangerous +info",
    ]


def test_store_password_is_hashed_before_the_template_and_never_logged() -> None:
    task = (ROLES / "cache_store" / "tasks" / "config.yml").read_text()
    block = task[: task.index("- name: Write the store's configuration")]
    assert "cache_store_password | hash('sha256')" in block
    assert "no_log: true" in block
    template = (ROLES / "cache_store" / "templates" / "users.acl.j2").read_text()
    assert not re.search(r"cache_store_password\b", template)  # only ..._sha256


# ------------------------------------------------------------------------ load balancer ---
@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> str:
    return render_for_balancer(tmp_path_factory.mktemp("haproxy"), "haproxy.cfg.j2")


def test_backend_iris_has_every_app_host_over_verified_tls_with_its_sni(haproxy: str) -> None:
    backend = haproxy.split("\nbackend iris\n", 1)[1]
    assert lines_of(backend, "server") == [
        f"server app-{i} 10.0.0.1{i}:443 sni str(app-{i}.example.test)"
        f" check-sni app-{i}.example.test verifyhost app-{i}.example.test"
        for i in (1, 2)
    ]
    (default,) = lines_of(backend, "default-server")
    assert "check inter 1000 fall 2 rise 2 ssl verify required" in default
    assert "ca-file /etc/ssl/certs/ca-certificates.crt" in default  # no CA PEM: the system's


def test_backend_verifies_against_the_given_ca_when_there_is_one(tmp_path: Path) -> None:
    conf = render_for_balancer(
        tmp_path, "haproxy.cfg.j2", load_balancer_backend_ca_pem="-----BEGIN CERTIFICATE-----"
    )
    assert "ca-file /etc/haproxy/iris-backend-ca.pem" in conf


def test_health_check_is_get_of_the_health_path_expecting_200(haproxy: str) -> None:
    assert "http-check send meth GET uri /api/iris/health" in haproxy
    assert "http-check expect status 200" in haproxy


def test_requests_are_retried_elsewhere_only_when_they_did_not_reach_a_service(
    haproxy: str,
) -> None:
    assert lines_of(haproxy, "retry-on") == [
        "retry-on conn-failure empty-response junk-response 502 503"
    ]
    assert lines_of(haproxy, "option redispatch") == ["option redispatch 1"]
    assert lines_of(haproxy, "option forwardfor") == ["option forwardfor"]
    protos = [x for x in lines_of(haproxy, "http-request") if "X-Forwarded-Proto" in x]
    assert protos == [
        "http-request set-header X-Forwarded-Proto http",
        "http-request set-header X-Forwarded-Proto https",
    ]


def test_port_80_redirects_to_https_except_acme_challenges(haproxy: str) -> None:
    plain = haproxy.split("frontend iris_http", 1)[1].split("frontend iris_https", 1)[0]
    assert "acl acme_challenge path_beg /.well-known/acme-challenge/" in plain
    assert "http-request redirect scheme https code 301 unless acme_challenge" in plain
    assert "use_backend acme if acme_challenge" in plain
    assert "server certbot 127.0.0.1:8402" in haproxy


def test_runtime_api_is_an_admin_socket_for_root_only(haproxy: str) -> None:
    assert lines_of(haproxy, "stats socket") == [
        "stats socket /run/haproxy-admin.sock mode 600 level admin"
    ]


def test_haproxys_own_errors_come_from_json_error_files(haproxy: str) -> None:
    files = lines_of(haproxy, "errorfile")
    assert files == [
        f"errorfile {s} /etc/haproxy/errors-json/{s}.http"
        for s in (400, 403, 408, 500, 502, 503, 504)
    ]
    defaults = haproxy.split("\ndefaults\n", 1)[1].split("\nfrontend ", 1)[0]
    assert lines_of(defaults, "errorfile") == files  # for every proxy, the H1 parser's included


def test_haproxy_tls_follows_mozilla_intermediate(haproxy: str) -> None:
    guide = shared_schema("mozilla-server-side-tls-guidelines-6.0.json")
    intermediate = guide["configurations"]["intermediate"]
    (ciphers,) = lines_of(haproxy, "ssl-default-bind-ciphers")
    assert ciphers.split()[1].split(":") == intermediate["ciphers"]["openssl"]
    (suites,) = lines_of(haproxy, "ssl-default-bind-ciphersuites")
    assert suites.split()[1].split(":") == intermediate["ciphersuites"]
    (options,) = lines_of(haproxy, "ssl-default-bind-options")
    assert f"ssl-min-ver {sorted(intermediate['tls_versions'])[0]}" in options
    (bind,) = [x for x in lines_of(haproxy, "bind") if "ssl" in x]
    curves = re.search(r"curves (\S+)", bind)
    assert curves and set(curves[1].split(":")) <= set(intermediate["tls_curves"])
    hsts = re.search(r"Strict-Transport-Security \"max-age=(\d+)\"", haproxy)
    assert hsts and int(hsts[1]) >= intermediate["hsts_min_age"]


def test_unit_drop_ins_keep_the_hardening_that_scores_4_9_or_lower(tmp_path: Path) -> None:
    store = render_role_template(
        tmp_path,
        "cache_store",
        "hardening.conf.j2",
        {
            "cache_store_daemon_user": "redis",
            "cache_store_data_dir": "/var/lib/redis",
            "cache_store_pid_file": "/run/redis/redis-server.pid",
            "cache_store_binary": "/usr/bin/redis-server",
        },
    ).splitlines()
    for line in ("Restart=on-failure", "CapabilityBoundingSet=", "PrivateUsers=true"):
        assert line in store, line
    assert "ReadWritePaths=/var/lib/redis /run/redis" in store
    balancer = render_for_balancer(tmp_path, "hardening.conf.j2").splitlines()
    assert "SystemCallFilter=@system-service chroot" in balancer  # HAProxy chroots its workers
    assert not any(x.startswith("SystemCallFilter=~") and "@mount" in x for x in balancer)
