"""The controller's public HTTPS check: TLS verified for the domain, reached by IP."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from irisctl.public import check_public_endpoint

DOMAIN = "iris-test.invalid"  # never resolves: the check must fall back to the address


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
        "-subj",
        "/CN=test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    )
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(d / "leaf.key"),
        "-out",
        str(d / "leaf.csr"),
        "-subj",
        f"/CN={DOMAIN}",
    )
    (d / "ext").write_text(f"subjectAltName=DNS:{DOMAIN}\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(d / "leaf.csr"),
        "-CA",
        str(d / "ca.pem"),
        "-CAkey",
        str(d / "ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(d / "ext"),
        "-out",
        str(d / "leaf.pem"),
    )
    return {"ca": d / "ca.pem", "cert": d / "leaf.pem", "key": d / "leaf.key"}


@pytest.fixture
def https_server(tls_files: dict[str, Path]) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            ok = self.path == "/api/iris/health" and self.headers["Host"].split(":")[0] == DOMAIN
            body = json.dumps({"status": "ok", "version": "1.2.3"}).encode()
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def test_healthy_when_certificate_verifies_for_the_domain(https_server, tls_files) -> None:
    check = check_public_endpoint(DOMAIN, "127.0.0.1", str(tls_files["ca"]), port=https_server)
    assert check == {
        "name": "public_endpoint",
        "ok": True,
        "detail": "HTTPS 200 via 127.0.0.1, version 1.2.3",
    }


def test_unverifiable_certificate_fails_with_reason(https_server) -> None:
    check = check_public_endpoint(DOMAIN, "127.0.0.1", None, port=https_server)
    assert not check["ok"]
    assert "TLS verification failed" in check["detail"]


def test_connection_refused_fails_with_reason() -> None:
    check = check_public_endpoint(DOMAIN, "127.0.0.1", None, port=1, timeout=2)
    assert not check["ok"] and "127.0.0.1" in check["detail"]
