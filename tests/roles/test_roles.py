"""Role templates rendered by ansible itself, checked against the reference schemas and the
design contracts; and the roles' own conventions (prefixed, documented defaults; OS vars)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from irisctl.paths import project_root
from role_helpers import render_role_template, role_defaults, shared_schema

ROLES = tuple(sorted(p.parent.name for p in (project_root() / "roles").glob("*/tasks")))
# Roles that run on the controller against the AWS APIs (playbooks/aws.yml), not on a host.
CONTROLLER_ROLES = tuple(role for role in ROLES if role.startswith("aws_"))
HOST_ROLES = tuple(role for role in ROLES if role not in CONTROLLER_ROLES)
# Roles with values that differ between OS families (vars/Debian.yml, vars/RedHat.yml).
OS_ROLES = ("service", "nginx", "certbot", "cloudwatch_agent", "ssm_agent")


# ------------------------------------------------------------------ cloudwatch agent ---
@pytest.fixture(scope="module")
def agent_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    text = render_role_template(
        tmp_path_factory.mktemp("cwagent"),
        "cloudwatch_agent",
        "amazon-cloudwatch-agent.json.j2",
        {"cloudwatch_agent_environment": "staging"},
    )
    return json.loads(text)


def test_cloudwatch_agent_config_validates_against_the_agent_schema(agent_config: dict) -> None:
    from jsonschema import Draft4Validator

    schema = shared_schema("amazon-cloudwatch-agent-schema.json")
    errors = sorted(Draft4Validator(schema).iter_errors(agent_config), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_cloudwatch_agent_listens_for_emf_on_loopback_only(agent_config: dict) -> None:
    # The schema lets logs.metrics_collected hold any key: a misspelled "emf" would pass it.
    collected = agent_config["logs"]["metrics_collected"]
    assert list(collected) == ["emf"]
    assert collected["emf"]["service_address"] == "tcp://127.0.0.1:25888"


def test_cloudwatch_agent_ships_gunicorn_and_nginx_logs_to_groups_from_variables(
    agent_config: dict,
) -> None:
    files = agent_config["logs"]["logs_collected"]["files"]["collect_list"]
    groups = {f["file_path"]: f["log_group_name"] for f in files}
    assert groups == {
        "/var/log/iris/access.log": "/iris/staging/gunicorn",
        "/var/log/iris/error.log": "/iris/staging/gunicorn",
        "/var/log/nginx/access.log": "/iris/staging/nginx",
        "/var/log/nginx/error.log": "/iris/staging/nginx",
    }
    assert agent_config["agent"]["region"] == "us-east-2"


# ----------------------------------------------------------------------------- nginx ---
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> str:
    return render_role_template(
        tmp_path_factory.mktemp("nginx"), "nginx", "iris.conf.j2", {"iris_domain": "api.x.test"}
    )


def directive(conf: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", conf, re.MULTILINE)


def test_nginx_tls_follows_mozilla_intermediate(site: str) -> None:
    guide = shared_schema("mozilla-server-side-tls-guidelines-6.0.json")
    intermediate = guide["configurations"]["intermediate"]
    assert directive(site, "ssl_protocols")[0].split() == intermediate["tls_versions"]
    assert directive(site, "ssl_ciphers")[0].split(":") == intermediate["ciphers"]["openssl"]
    curves = directive(site, "ssl_ecdh_curve")[0].split(":")
    allowed = intermediate["tls_curves"]
    assert set(curves) <= set(allowed) and curves == [c for c in allowed if c in curves]
    prefer = directive(site, "ssl_prefer_server_ciphers")[0]
    assert prefer == ("on" if intermediate["server_preferred_order"] else "off")
    hsts = re.search(r"Strict-Transport-Security \"max-age=(\d+)\" always", site)
    assert hsts and int(hsts.group(1)) >= intermediate["hsts_min_age"]


def test_nginx_has_no_ocsp_stapling(site: str) -> None:
    # Let's Encrypt ended OCSP in 2025: stapling would only log errors.
    assert "ssl_stapling" not in site


def test_nginx_proxies_the_api_with_the_hand_built_hosts_limits(site: str) -> None:
    assert directive(site, "client_max_body_size") == ["10M"]
    # the same in both proxied locations (health, and the rest of the API)
    assert directive(site, "proxy_connect_timeout") == ["60s"] * 2
    assert directive(site, "proxy_send_timeout") == ["120s"] * 2
    assert directive(site, "proxy_read_timeout") == ["120s"] * 2
    assert "location /api/iris/ {" in site
    # the analyses' socket, then the same workers' health socket (service role's defaults)
    assert re.findall(r"^\s*server (\S+);", site, re.MULTILINE) == [
        "127.0.0.1:8080",
        "127.0.0.1:8081",
    ]
    # gunicorn closes every connection (keepalive 0): an upstream keepalive pool would be unused
    for upstream in ("iris_backend", "iris_health"):
        assert "keepalive" not in site.split(f"upstream {upstream}", 1)[1].split("}", 1)[0]
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP", "Host"):
        assert re.search(rf"proxy_set_header {header} ", site), header


def test_nginx_redirects_port_80_except_acme_and_names_default_servers(site: str) -> None:
    listens = directive(site, "listen")
    assert "80 default_server" in listens
    assert "443 ssl http2 default_server backlog=4096" in listens
    plain = site[: site.index("listen 443")]
    acme = plain.index("location ^~ /.well-known/acme-challenge/")
    redirect = plain.index("return 301 https://$host$request_uri")
    assert acme < redirect
    assert directive(site, "server_name") == ["api.x.test", "api.x.test"]


# --------------------------------------------------------------------------- service ---
def test_service_env_file_carries_no_openai_key(tmp_path: Path) -> None:
    env = render_role_template(
        tmp_path,
        "service",
        "iris.env.j2",
        {"service_api_key": "k1", "service_extra_env": {"IRIS_CACHE_TTL_DAYS": "7"}},
    )
    values = dict(
        line.split("=", 1) for line in env.splitlines() if line and not line.startswith("#")
    )
    assert "OPENAI_API_KEY" not in values
    assert values["IRIS_API_KEY"] == '"k1"'
    assert values["IRIS_CACHE_DIR"] == '"/var/iris"'
    # the workers tell health-socket connections from the rest by it (health_lane.py)
    assert values["IRIS_HEALTH_BIND"] == '"127.0.0.1:8081"'
    assert values["IRIS_CACHE_TTL_DAYS"] == '"7"'
    assert "OPENAI_BASE_URL" not in values  # empty settings are left out, not set to ""


def test_service_unit_follows_the_host_contract(tmp_path: Path) -> None:
    unit = render_role_template(tmp_path, "service", "iris-backend.service.j2")
    for line in (
        "Type=notify",
        "User=iris",
        "EnvironmentFile=/etc/iris/iris.env",
        "ExecStart=/opt/iris/current/venv/bin/gunicorn -c /etc/iris/gunicorn.conf.py"
        " iris_service.wsgi:app",
        "Restart=on-failure",
        "WantedBy=multi-user.target",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/iris /var/log/iris",
    ):
        assert line in unit.splitlines(), line


def test_service_port_is_held_by_a_socket_unit_across_restarts(tmp_path: Path) -> None:
    socket_unit = render_role_template(tmp_path, "service", "iris-backend.socket.j2").splitlines()
    # analyses, then health checks: both served by the same gunicorn workers
    assert [line for line in socket_unit if line.startswith("ListenStream=")] == [
        "ListenStream=127.0.0.1:8080",
        "ListenStream=127.0.0.1:8081",
    ]
    assert "WantedBy=sockets.target" in socket_unit
    service_unit = render_role_template(tmp_path, "service", "iris-backend.service.j2")
    assert "Requires=iris-backend.socket" in service_unit.splitlines()


def test_gunicorn_config_imports_the_package_defaults_first(tmp_path: Path) -> None:
    conf = render_role_template(tmp_path, "service", "gunicorn.conf.py.j2")
    code = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert code[0].startswith("from iris_service.gunicorn_conf import *")
    assert 'bind = ["127.0.0.1:8080", "127.0.0.1:8081"]' in code
    compile(conf, "gunicorn.conf.py", "exec")


def test_gunicorn_serving_settings_are_the_services_own_unless_the_inventory_sets_them(
    tmp_path: Path,
) -> None:
    conf = render_role_template(tmp_path, "service", "gunicorn.conf.py.j2")
    assert not re.search(r"^(workers|threads|timeout) =", conf, re.MULTILINE)
    conf = render_role_template(tmp_path, "service", "gunicorn.conf.py.j2", {"service_threads": 8})
    assert re.findall(r"^(workers|threads|timeout) = (\d+)$", conf, re.MULTILINE) == [
        ("threads", "8")
    ]


# --------------------------------------------------------------------- conventions ---
@pytest.mark.parametrize("role", ROLES)
def test_role_defaults_are_prefixed_and_documented(role: str) -> None:
    path = project_root() / "roles" / role / "defaults" / "main.yml"
    lines = path.read_text().splitlines()
    for name in role_defaults(role):
        assert name.startswith(f"{role}_"), name
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
        assert lines[index - 1].startswith("# "), f"{name} has no comment line above it"


@pytest.mark.parametrize("role", OS_ROLES)
def test_role_has_os_family_vars_and_platforms(role: str) -> None:
    base = project_root() / "roles" / role
    for family in ("Debian", "RedHat"):
        assert (base / "vars" / f"{family}.yml").is_file(), family
    meta = yaml.safe_load((base / "meta" / "main.yml").read_text())
    platforms = {p["name"]: p["versions"] for p in meta["galaxy_info"]["platforms"]}
    assert platforms == {"Amazon Linux": ["2023"], "Debian": ["bookworm"]}


@pytest.mark.parametrize("role", HOST_ROLES)
def test_role_has_platforms(role: str) -> None:
    meta = yaml.safe_load((project_root() / "roles" / role / "meta" / "main.yml").read_text())
    platforms = {p["name"]: p["versions"] for p in meta["galaxy_info"]["platforms"]}
    assert platforms == {"Amazon Linux": ["2023"], "Debian": ["bookworm"]}


@pytest.mark.parametrize("role", CONTROLLER_ROLES)
def test_controller_roles_run_anywhere_ansible_does(role: str) -> None:
    meta = yaml.safe_load((project_root() / "roles" / role / "meta" / "main.yml").read_text())
    platforms = {p["name"]: p["versions"] for p in meta["galaxy_info"]["platforms"]}
    assert platforms == {"GenericLinux": ["all"]}


def test_handler_names_are_unique_across_roles() -> None:
    """Handlers of every role in a play share one namespace: of two same-named handlers only
    one runs, in the later role's place (a daemon-reload after the restarts that needed it)."""
    roles_by_handler: dict[str, list[str]] = {}
    topics: dict[str, set[str]] = {}  # role -> the topics its handlers listen to
    for path in sorted((project_root() / "roles").glob("*/handlers/main.yml")):
        role = path.parent.parent.name
        for handler in yaml.safe_load(path.read_text()) or []:
            roles_by_handler.setdefault(handler["name"], []).append(role)
            listen = handler.get("listen", [])
            topics.setdefault(role, set()).update([listen] if isinstance(listen, str) else listen)
    assert {name: roles for name, roles in roles_by_handler.items() if len(roles) > 1} == {}
    # nor is one role's handler notified by another role's topic
    crossed = {
        (name, role, other)
        for name, roles in roles_by_handler.items()
        for role in roles
        for other, listened in topics.items()
        if other != role and name in listened
    }
    assert crossed == set()
