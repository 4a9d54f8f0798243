"""The public edge on a real host: every answer nginx gives is JSON in the service's error shape
and carries the security headers; nginx and every other unit the project installs or drops in
runs sandboxed (systemd-analyze security 4.9 or lower), and certbot renewals still reload nginx.

The disruptive checks (backend stopped, backend frozen, certificate renewed) run on the edge host
(test_lifecycle and test_irisctl have hosts of their own) and put everything back before they
end."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from host_helpers import (
    ANSIBLE_PLAYBOOK,
    API_KEY,
    EDGE_HOST,
    HttpAnswer,
    Sandbox,
    served_certificate,
)
from host_helpers import https as https_stdout
from irisctl.paths import project_root
from irisctl.sandbox import hosts
from irisctl.sandbox.hosts import Host

T = TypeVar("T")

EXPOSURE_CEILING = 4.9
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
# Services the project installs (iris-backend) or drops in to (nginx, certbot): each is scored.
PROJECT_SERVICES = {"iris-backend.service", "nginx.service", "certbot.service"}
MANAGED_MARKER = "Ansible managed"
SLOW_READ_TIMEOUT_S = 3  # nginx_proxy_read_timeout for the one converge of the 504 test
# Roles whose defaults own values the nginx role reads (one owner per value).
NGINX_READS = ("service", "certbot")


@pytest.fixture(scope="module")
def box(converged: Sandbox) -> Sandbox:
    return converged


@pytest.fixture(scope="module")
def edge(box: Sandbox) -> Host:
    return box.info.hosts[EDGE_HOST]


@pytest.fixture(scope="module")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Request bodies over the service's 2 MiB limit (3 MB) and over nginx's 10 MB limit (11 MB)."""
    base = tmp_path_factory.mktemp("bodies")
    files = {"3MB": 3_000_000, "11MB": 11_000_000}
    for name, size in files.items():
        # Valid JSON, so only the size can be the reason for refusing it.
        filler = "x" * (size - 64)
        (base / name).write_text(json.dumps({"filename": "a.py", "source_code": filler}))
    return {name: base / name for name in files}


# ------------------------------------------------------------------------- helpers ---
def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


def root(host: Host, command: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [*hosts.ssh_command(host, "root"), command], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command}: rc={done.returncode} {done.stderr.strip()}"
    return done.stdout


def request(
    box: Sandbox,
    host: Host,
    path: str,
    *,
    method: str = "GET",
    body_file: Path | None = None,
    scheme: str = "https",
    http1: bool = False,
    timeout: float = 30,
) -> HttpAnswer:
    """One request to the host's public name through nginx (TLS verified), body from a file.

    ``headers`` holds the final header block only (no ``100 Continue`` interim answer)."""
    port = 443 if scheme == "https" else 80
    out = box.workdir / "edge-curl"
    out.mkdir(exist_ok=True)
    head, body = out / "head", out / "body"
    argv = ["curl", "-sS", "--max-time", str(timeout), "-X", method, "-H", f"x-api-key: {API_KEY}"]
    argv += ["--resolve", f"{host.fqdn}:{port}:{host.ip}", "--cacert", str(box.pebble_roots)]
    argv += ["-D", str(head), "-o", str(body), "-w", "%{http_code}"]
    if http1:
        argv.append("--http1.1")
    if body_file is not None:
        argv += ["-H", "content-type: application/json", "--data-binary", f"@{body_file}"]
    argv.append(f"{scheme}://{host.fqdn}{path}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
    if done.returncode != 0:
        return HttpAnswer(status=-1, body=done.stderr.strip(), headers="")
    blocks = [b for b in head.read_text().replace("\r\n", "\n").split("\n\n") if b.strip()]
    return HttpAnswer(status=int(done.stdout), body=body.read_text(), headers=blocks[-1])


def header_values(answer: HttpAnswer) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in answer.headers.splitlines()[1:]:
        name, _, value = line.partition(":")
        values.setdefault(name.strip().lower(), []).append(value.strip())
    return values


def assert_edge_headers(answer: HttpAnswer, https: bool = True) -> None:
    headers = header_values(answer)
    for name, value in SECURITY_HEADERS.items():
        if name == "strict-transport-security" and not https:
            continue
        assert headers.get(name) == [value], f"{name}: {headers.get(name)}\n{answer.headers}"
    assert headers.get("server") == ["nginx"], "the Server header must carry no version"


def assert_json_error(answer: HttpAnswer, status: int, https: bool = True) -> dict:
    """``status`` with the service's error shape ``{"success": false, "error": "..."}`` and the
    security headers."""
    assert answer.status == status, f"{answer.status} {answer.body[:300]}"
    content_type = header_values(answer).get("content-type", [""])[0]
    assert content_type.startswith("application/json"), content_type
    body = answer.json()
    assert set(body) == {"success", "error"} and body["success"] is False, body
    assert isinstance(body["error"], str) and body["error"], body
    assert_edge_headers(answer, https=https)
    return body


def health(box: Sandbox, host: Host) -> HttpAnswer | None:
    answer = request(box, host, "/api/iris/health", timeout=10)
    return answer if answer.status == 200 else None


def converge_nginx(box: Sandbox, host: Host, **overrides: object) -> None:
    """The nginx role alone on ``host`` (with ``overrides`` as extra vars), as site.yml runs it:
    with the defaults of the roles that own the values nginx reads (service_bind, certbot_webroot),
    which site.yml's play has from running those roles."""
    roles = project_root() / "roles"
    owners = [str(roles / role / "defaults" / "main.yml") for role in NGINX_READS]
    play = box.workdir / "edge-nginx.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Converge nginx",
                    "hosts": "iris",
                    "become": True,
                    "vars_files": owners,
                    "roles": ["nginx"],
                }
            ]
        )
    )
    ansible = shutil.which("ansible-playbook", path=str(ANSIBLE_PLAYBOOK)) or "ansible-playbook"
    argv = [ansible, "-i", str(box.inventory), str(play), "--limit", host.name]
    if overrides:
        argv += ["-e", json.dumps(overrides)]
    done = subprocess.run(argv, cwd=project_root(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def exposure(host: Host, unit: str) -> float:
    out = root(host, f"systemd-analyze security --no-pager {unit}")
    return float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))


def project_services(host: Host) -> set[str]:
    """Services whose unit file or a drop-in the project wrote (they carry the managed marker);
    a socket or timer counts as the service it starts."""
    paths = root(
        host,
        f"grep -rlF '{MANAGED_MARKER}' /etc/systemd/system --include='*.service' "
        "--include='*.socket' --include='*.timer' --include='*.conf' || true",
    ).split()
    services = set()
    for path in paths:
        relative = Path(path).relative_to("/etc/systemd/system")
        unit = relative.parts[0].removesuffix(".d")
        if unit.endswith((".socket", ".timer")):
            unit = root(host, f"systemctl show -p Triggers --value {unit}").strip()
        services.update(unit.split())
    return services


# ------------------------------------------------------------- every answer is JSON ---
def test_a_successful_answer_carries_the_security_headers(box: Sandbox, edge: Host) -> None:
    answer = request(box, edge, "/api/iris/health")
    assert answer.status == 200, answer.body
    assert "version" in answer.json()
    assert_edge_headers(answer)


def test_an_unknown_path_gets_a_json_404_from_nginx(box: Sandbox, edge: Host) -> None:
    body = assert_json_error(request(box, edge, "/wp-login.php"), 404)
    assert body["error"] == "Not found"


def test_an_unknown_acme_token_over_plain_http_gets_a_json_404(box: Sandbox, edge: Host) -> None:
    answer = request(box, edge, "/.well-known/acme-challenge/absent", scheme="http")
    assert_json_error(answer, 404, https=False)


def test_a_method_nginx_refuses_gets_a_json_405(box: Sandbox, edge: Host) -> None:
    body = assert_json_error(request(box, edge, "/api/iris/health", method="TRACE"), 405)
    assert body["error"] == "Method not allowed"


def test_the_services_own_errors_pass_through_nginx_untouched(box: Sandbox, edge: Host) -> None:
    # proxy_intercept_errors stays off: the service's messages reach the client as it wrote them.
    body = assert_json_error(request(box, edge, "/api/iris/analyze"), 405)
    assert body["error"] == "Method GET not allowed on /api/iris/analyze"
    body = assert_json_error(request(box, edge, "/api/iris/nothing-here"), 404)
    assert body["error"] == "Not found: GET /api/iris/nothing-here"


@pytest.mark.parametrize("http1", [False, True], ids=["http2", "http1.1"])
def test_a_body_over_nginx_limit_gets_a_json_413(
    box: Sandbox, edge: Host, bodies: dict[str, Path], http1: bool
) -> None:
    answer = request(
        box, edge, "/api/iris/analyze", method="POST", body_file=bodies["11MB"], http1=http1
    )
    assert_json_error(answer, 413)


@pytest.mark.parametrize("http1", [False, True], ids=["http2", "http1.1"])
def test_a_body_over_the_service_limit_gets_a_413_never_a_502(
    box: Sandbox, edge: Host, bodies: dict[str, Path], http1: bool
) -> None:
    # Under nginx's 10 MB, over the service's 2 MiB: nginx forwards it, the service refuses it.
    answer = request(
        box, edge, "/api/iris/analyze", method="POST", body_file=bodies["3MB"], http1=http1
    )
    assert_json_error(answer, 413)


def test_a_stopped_backend_gets_a_json_502_or_503(box: Sandbox, edge: Host) -> None:
    # The socket unit would accept (and start the service) for a stopped service: stop both.
    root(edge, "systemctl stop iris-backend.socket iris-backend.service")
    try:
        answer = request(box, edge, "/api/iris/health")
        assert answer.status in (502, 503), answer
        body = assert_json_error(answer, answer.status)
        assert body["error"] == "The IRIS backend is unavailable"
    finally:
        root(edge, "systemctl start iris-backend.socket iris-backend.service")
        wait_for(lambda: health(box, edge), 60, "the backend to answer health again")


def test_a_backend_too_slow_gets_a_json_504(box: Sandbox, edge: Host) -> None:
    site = "sha256sum /etc/nginx/conf.d/iris.conf"
    before = root(edge, site)
    converge_nginx(box, edge, nginx_proxy_read_timeout=SLOW_READ_TIMEOUT_S)
    try:
        # A frozen gunicorn: the kernel still accepts on the socket, nobody ever answers.
        root(edge, "systemctl kill --signal=SIGSTOP iris-backend.service")
        started = time.monotonic()
        answer = request(box, edge, "/api/iris/health", timeout=30)
        waited = time.monotonic() - started
        body = assert_json_error(answer, 504)
        assert body["error"] == "The IRIS backend took too long to answer"
        assert SLOW_READ_TIMEOUT_S <= waited < SLOW_READ_TIMEOUT_S + 10, waited
    finally:
        root(edge, "systemctl kill --signal=SIGCONT iris-backend.service")
        converge_nginx(box, edge)
    assert root(edge, site) == before, "the site must be back to what converge wrote"
    wait_for(lambda: health(box, edge), 60, "the backend to answer health again")


# -------------------------------------------------------------- sandboxed units ---
def test_every_unit_the_project_installs_or_drops_in_scores_at_most_4_9(box: Sandbox) -> None:
    scores: dict[str, float] = {}
    for host in box.info.hosts:
        services = project_services(host)
        assert services >= PROJECT_SERVICES, f"{host.name}: found only {sorted(services)}"
        scores.update({f"{host.name}:{unit}": exposure(host, unit) for unit in sorted(services)})
    print(f"\nsystemd-analyze security: {scores}")
    too_exposed = {unit: score for unit, score in scores.items() if score > EXPOSURE_CEILING}
    assert not too_exposed, f"over {EXPOSURE_CEILING}: {too_exposed}"


def test_nginx_is_sandboxed_by_the_drop_in(edge: Host) -> None:
    drop_ins = root(edge, "systemctl show -p DropInPaths --value nginx.service").split()
    assert "/etc/systemd/system/nginx.service.d/hardening.conf" in drop_ins
    pid = root(edge, "systemctl show -p MainPID --value nginx.service").strip()
    assert pid != "0"
    # The running master really lost the capabilities the drop-in leaves out (CAP_SYS_ADMIN = 21).
    bounding = int(root(edge, f"awk '/^CapBnd/ {{print $2}}' /proc/{pid}/status"), 16)
    assert not bounding & (1 << 21)
    assert root(edge, "systemctl is-active nginx.service").strip() == "active"


def test_a_certbot_renewal_in_its_sandbox_reloads_the_sandboxed_nginx(
    box: Sandbox, edge: Host
) -> None:
    """The real renewal path: certbot.service (with its drop-ins) renews, its deploy hook runs
    `nginx -t` and `systemctl reload nginx`, and nginx serves the new certificate without a
    restart. A transient drop-in under /run forces the renewal; it is removed afterwards."""
    before = served_certificate(edge, box.pebble_roots)["serialNumber"]
    master = root(edge, "systemctl show -p MainPID --value nginx.service").strip()
    force = "/run/systemd/system/certbot.service.d/zz-test-force-renewal.conf"
    exec_start = root(edge, "systemctl show -p ExecStart --value certbot.service")
    argv = re.search(r"argv\[\]=([^;]+);", exec_start).group(1).strip()
    root(
        edge,
        f"mkdir -p {Path(force).parent} && printf '[Service]\\nExecStart=\\nExecStart=%s\\n' "
        f"'{argv} --force-renewal' > {force} && systemctl daemon-reload",
    )
    try:
        root(edge, "systemctl start certbot.service", timeout=180)
    finally:
        root(edge, f"rm -f {force} && systemctl daemon-reload")
    result = root(edge, "systemctl show -p Result --value certbot.service").strip()
    assert result == "success", root(edge, "journalctl -u certbot.service -n 20 --no-pager")
    renewed = wait_for(
        lambda: (s := served_certificate(edge, box.pebble_roots)["serialNumber"]) != before and s,
        30,
        "nginx to serve the renewed certificate (see the deploy hook in letsencrypt.log)",
    )
    assert renewed != before
    assert root(edge, "systemctl show -p MainPID --value nginx.service").strip() == master


# ------------------------------------------------------------------- load shedding ---
SHED_CEILING = 2  # nginx_api_max_in_flight for the one converge of the shedding test


def test_past_the_ceiling_nginx_sheds_with_a_json_503_and_retry_after(
    box: Sandbox, edge: Host, tmp_path: Path
) -> None:
    """With the ceiling at 2 and two slow analyses in flight, a third API request is answered
    at once with a JSON 503 and Retry-After, health still answers, and the two finish."""
    site = "sha256sum /etc/nginx/conf.d/iris.conf"
    before = root(edge, site)

    def body(n: int) -> dict:
        source = f"y = {n}\n# IRIS-STANDIN: delay=6\n"
        return {"filename": "s.py", "language": "python", "source_code": source}

    api = "/api/iris/analyze"
    third = tmp_path / "third.json"
    third.write_text(json.dumps(body(SHED_CEILING)))
    converge_nginx(box, edge, nginx_api_max_in_flight=SHED_CEILING)
    pool = ThreadPoolExecutor(SHED_CEILING)
    try:
        # https_stdout: its answer comes on stdout, so concurrent requests share no files
        slow = [
            pool.submit(https_stdout, edge, api, box.pebble_roots, method="POST", body=body(n))
            for n in range(SHED_CEILING)
        ]
        in_flight = "ss -Htn state established '( dport = :8080 )' | wc -l"
        wait_for(lambda: int(root(edge, in_flight)) >= SHED_CEILING, 5, "two analyses in flight")
        started = time.monotonic()
        shed = request(box, edge, api, method="POST", body_file=third)
        waited = time.monotonic() - started
        error = assert_json_error(shed, 503)
        assert error["error"] == "The IRIS backend is at capacity, retry later"
        assert header_values(shed).get("retry-after") == ["5"], shed.headers
        assert waited < 3, waited  # answered at once, not queued behind the analyses
        assert request(box, edge, "/api/iris/health").status == 200
        assert [future.result().status for future in slow] == [200] * SHED_CEILING
    finally:
        pool.shutdown(wait=True)
        converge_nginx(box, edge)
    assert root(edge, site) == before, "the site must be back to what converge wrote"
    # nginx's other errors carry no Retry-After: only shed requests do.
    assert "retry-after" not in header_values(request(box, edge, "/wp-login.php"))
