"""The host metrics script, rendered from its template and run here against a local TLS server
standing in for nginx: one schema-valid EMF line with the disk's use, the certificate's days
left and the health check, appended where IRIS_EMF_FILE points."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from role_helpers import render_role_template, role_defaults, shared_schema

CERT_DAYS = 30


class Health(BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        Health.paths.append(self.path)
        self.send_response(Health.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """nginx's stand-in: HTTPS on a free loopback port with a certificate valid for 30 days."""
    work = tmp_path_factory.mktemp("tls")
    key, cert = work / "key.pem", work / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=iris.test"]
        + ["-days", str(CERT_DAYS), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def script(tmp_path: Path, port: int) -> Path:
    text = render_role_template(
        tmp_path,
        "host_metrics",
        "iris-host-metrics.py.j2",
        {
            "host_metrics_https_address": f"127.0.0.1:{port}",
            "host_metrics_disk_path": str(tmp_path),
            "nginx_server_name": "iris.test",
        },
    )
    path = tmp_path / "iris-host-metrics"
    path.write_text(text)
    return path


def run_script(tmp_path: Path, port: int) -> tuple[dict[str, Any], list[str]]:
    emf = tmp_path / "emf.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRIS_")}
    env.update(IRIS_ENV="prod", IRIS_EMF_FILE=str(emf))
    done = subprocess.run(
        [sys.executable, str(script(tmp_path, port))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = emf.read_text().splitlines()
    assert len(lines) == 1 and lines[0] == done.stdout.strip()
    return json.loads(lines[0]), lines


def test_one_schema_valid_line_with_disk_certificate_and_health(
    tmp_path: Path, tls_server: int
) -> None:
    from jsonschema import Draft7Validator

    Health.status = 200
    Health.paths.clear()
    event, _ = run_script(tmp_path, tls_server)
    errors = sorted(
        Draft7Validator(shared_schema("cloudwatch-emf-spec-schema.json")).iter_errors(event),
        key=str,
    )
    assert errors == []
    directive = event["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == role_defaults("host_metrics")["host_metrics_namespace"]
    assert directive["Dimensions"] == [["Environment"]] and event["Environment"] == "prod"
    assert [m["Name"] for m in directive["Metrics"]] == [
        "DiskUsedPercent",
        "CertificateDaysLeft",
        "HealthCheckOk",
    ]
    assert event["HealthCheckOk"] == 1
    assert event["CertificateDaysLeft"] in (CERT_DAYS - 1, CERT_DAYS)
    assert 0 < event["DiskUsedPercent"] <= 100
    assert Health.paths == ["/api/iris/health"]


def test_an_unhealthy_answer_reports_zero(tmp_path: Path, tls_server: int) -> None:
    Health.status = 503
    try:
        event, _ = run_script(tmp_path, tls_server)
    finally:
        Health.status = 200
    assert event["HealthCheckOk"] == 0
    assert event["CertificateDaysLeft"] in (CERT_DAYS - 1, CERT_DAYS)


def test_nothing_listening_is_unhealthy_with_no_certificate_days(
    tmp_path: Path, tls_server: int
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = int(sock.getsockname()[1])
    event, _ = run_script(tmp_path, closed_port)
    assert event["HealthCheckOk"] == 0 and event["CertificateDaysLeft"] == 0


def test_the_alarms_read_the_namespace_the_host_writes() -> None:
    assert (
        role_defaults("aws_alarms")["aws_alarms_host_namespace"]
        == role_defaults("host_metrics")["host_metrics_namespace"]
    )
