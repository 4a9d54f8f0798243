"""The edge as rendered by ansible: nginx answers its own errors in the service's JSON shape with
the security headers on every answer, and the nginx and certbot units get their sandboxing
drop-ins."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from role_helpers import render_role_template, role_defaults

SECURITY_HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> str:
    return render_role_template(
        tmp_path_factory.mktemp("edge"), "nginx", "iris.conf.j2", {"iris_domain": "api.x.test"}
    )


def servers(conf: str) -> list[str]:
    """The text of each top-level ``server { ... }`` block."""
    blocks = []
    for match in re.finditer(r"^server \{", conf, re.MULTILINE):
        depth, index = 0, match.start()
        while True:
            depth += {"{": 1, "}": -1}.get(conf[index], 0)
            index += 1
            if depth == 0 and conf[index - 1] == "}":
                break
        blocks.append(conf[match.start() : index])
    return blocks


def locations(server: str) -> list[str]:
    return re.findall(r"^ {4}location [^{]+\{.*?^ {4}\}", server, re.MULTILINE | re.DOTALL)


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_every_nginx_error_answers_with_the_services_json_shape(site: str) -> None:
    messages = {int(k): v for k, v in role_defaults("nginx")["nginx_error_messages"].items()}
    assert {404, 405, 413, 502, 503, 504} <= set(messages)
    mapped = dict(re.findall(r"^\s+(\d{3}) \"([^\"]+)\";", site, re.MULTILINE))
    assert {int(k): v for k, v in mapped.items()} == messages
    for server in servers(site):
        pages = re.findall(r"error_page ([\d ]+) @iris_error;", server)
        assert [int(s) for s in pages[0].split()] == list(messages)
        body = re.search(r"location @iris_error \{.*?return 200 '([^']+)';", server, re.DOTALL)
        assert body, "every server needs the JSON error location"
        for message in messages.values():
            rendered = body.group(1).replace("$iris_error_message", message).replace("\\n", "")
            assert json.loads(rendered) == {"success": False, "error": message}
        assert "default_type application/json;" in server


def test_the_services_own_errors_are_not_intercepted(site: str) -> None:
    assert not re.search(r"proxy_intercept_errors\s+on", site)


def test_every_answer_carries_the_security_headers(site: str) -> None:
    plain, tls = servers(site)
    for server in (plain, tls):
        for header in SECURITY_HEADERS:
            assert re.search(rf"^ {{4}}add_header {header} \"[^\"]+\" always;", server, re.M), (
                header
            )
        assert re.search(r"frame-ancestors 'none'", server)
        # A location with an add_header of its own would drop every server-level one.
        for location in locations(server):
            assert "add_header" not in location, location
    assert "Strict-Transport-Security" in tls and "Strict-Transport-Security" not in plain
    assert 'X-Frame-Options "DENY"' in tls
    assert 'Referrer-Policy "no-referrer"' in tls


def test_nginx_drop_in_sandboxes_the_master_with_what_it_needs(tmp_path: Path) -> None:
    text = render_role_template(
        tmp_path,
        "nginx",
        "hardening.conf.j2",
        {"nginx_pid_file": "/run/nginx.pid", "nginx_user": "www-data"},
    )
    settings = unit_settings(text)
    assert text.splitlines()[0].startswith("# ") and "[Service]" in text.splitlines()
    assert settings["CapabilityBoundingSet"] == [
        "CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE"
    ]
    assert settings["ReadWritePaths"] == ["/var/log/nginx /var/lib/nginx /run"]
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "true",
        "PrivateDevices": "true",
        "RestrictNamespaces": "true",
        "SystemCallArchitectures": "native",
    }.items():
        assert settings[key] == [value], key
    assert "@system-service" in settings["SystemCallFilter"]


def test_certbot_drop_in_lets_renewals_write_and_the_hook_reload_nginx(tmp_path: Path) -> None:
    text = render_role_template(tmp_path, "certbot", "hardening.conf.j2")
    settings = unit_settings(text)
    writable = settings["ReadWritePaths"][0].split()
    assert {"/etc/letsencrypt", "/var/lib/letsencrypt", "/var/log/letsencrypt"} <= set(writable)
    assert "/var/www/letsencrypt" in writable  # the HTTP-01 webroot
    assert "/var/log/nginx" in writable  # the deploy hook's nginx -t opens nginx's logs
    assert "CAP_NET_BIND_SERVICE" in settings["CapabilityBoundingSet"][0]  # nginx -t binds
    assert settings["ProtectSystem"] == ["strict"]
    assert "AF_UNIX" in settings["RestrictAddressFamilies"][0]  # systemctl reload nginx


# ------------------------------------------------------------------- load shedding ---
def test_api_requests_past_the_ceiling_are_shed_with_a_json_503_and_retry_after(
    site: str,
) -> None:
    defaults = role_defaults("nginx")
    _plain, tls = servers(site)
    api = next(loc for loc in locations(tls) if loc.startswith("    location /api/iris/ {"))
    assert f"limit_conn iris_in_flight {defaults['nginx_api_max_in_flight']};" in api
    assert "limit_conn_status 503;" in api
    assert re.search(r"^limit_conn_zone \$server_name zone=iris_in_flight:\d+m;", site, re.M)
    # The shed answer: 503 goes to @iris_error, whose message and Retry-After come from the
    # limit's own verdict, so the service's and nginx's other 503s keep theirs.
    assert "503" in re.search(r"error_page ([\d ]+) @iris_error;", tls).group(1).split()
    shed = re.search(r"map \$limit_conn_status \$iris_error_message \{(.*?)\}", site, re.S)
    assert f'REJECTED "{defaults["nginx_api_shed_message"]}";' in shed.group(1)
    assert "default $iris_status_message;" in shed.group(1)
    retry = re.search(r"map \$limit_conn_status \$iris_retry_after \{(.*?)\}", site, re.S)
    assert f'REJECTED "{defaults["nginx_api_retry_after_s"]}";' in retry.group(1)
    assert 'default "";' in retry.group(1)  # an empty value adds no header
    assert re.search(r"^ {4}add_header Retry-After \$iris_retry_after always;", tls, re.M)
    message = defaults["nginx_api_shed_message"]
    assert json.loads(json.dumps({"error": message}))["error"] == message
    assert '"' not in message and "\\" not in message


def test_health_is_proxied_outside_the_ceiling_to_its_own_socket(site: str) -> None:
    _plain, tls = servers(site)
    health = next(loc for loc in locations(tls) if "location = /api/iris/health {" in loc)
    assert "proxy_pass http://iris_health;" in health and "limit_conn" not in health
    api = next(loc for loc in locations(tls) if "location /api/iris/ {" in loc)
    assert "proxy_pass http://iris_backend;" in api


def test_nginx_holds_a_burst_of_connections(tmp_path: Path, site: str) -> None:
    defaults = role_defaults("nginx")
    assert defaults["nginx_worker_connections"] >= 2 * 1000  # 1,000 clients + their upstreams
    for listen in re.findall(r"listen (?:\[::\]:)?443 .*;", site):
        assert f"backlog={defaults['nginx_listen_backlog']}" in listen
    drop_in = unit_settings(
        render_role_template(
            tmp_path,
            "nginx",
            "hardening.conf.j2",
            {"nginx_user": "www-data", "nginx_pid_file": "/run/nginx.pid"},
        )
    )
    assert int(drop_in["LimitNOFILE"][0]) >= defaults["nginx_worker_connections"]
