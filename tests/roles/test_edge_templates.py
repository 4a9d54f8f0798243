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
