"""The controller-side check: the public health endpoint over verified HTTPS."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from typing import Any

HEALTH_PATH = "/api/iris/health"


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address`` while verifying the certificate (and sending SNI/Host) for ``host``."""

    def __init__(
        self, host: str, address: str, context: ssl.SSLContext, timeout: float, port: int = 443
    ) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _address_for(domain: str, fallback: str) -> str:
    """The domain's own address when it resolves, else the inventory's ``ansible_host``."""
    try:
        return str(socket.getaddrinfo(domain, 443, type=socket.SOCK_STREAM)[0][4][0])
    except (socket.gaierror, UnicodeError):
        return fallback


def https_request(
    domain: str,
    address: str,
    method: str = "GET",
    path: str = HEALTH_PATH,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    ca_bundle: str | None = None,
    timeout: float = 10.0,
    port: int = 443,
) -> tuple[int, bytes]:
    """One HTTPS request to ``address`` for ``domain`` (TLS verified): (status, body).

    Raises OSError / ssl.SSLError / http.client.HTTPException like http.client does.
    """
    context = ssl.create_default_context(cafile=ca_bundle)
    conn = _PinnedHTTPSConnection(domain, address, context, timeout, port)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_public_endpoint(
    domain: str,
    fallback_address: str,
    ca_bundle: str | None = None,
    timeout: float = 10.0,
    port: int = 443,
) -> dict[str, Any]:
    """``GET https://DOMAIN/api/iris/health`` with TLS verified: a check dict (name, ok, detail)."""
    url = f"https://{domain}{HEALTH_PATH}"
    if not domain:
        return {"name": "public_endpoint", "ok": False, "detail": "no iris_domain in inventory"}
    address = _address_for(domain, fallback_address)
    if ca_bundle and not os.path.isfile(ca_bundle):
        return {"name": "public_endpoint", "ok": False, "detail": f"no CA bundle {ca_bundle}"}
    try:
        status, body = https_request(
            domain,
            address,
            headers={"Accept": "application/json"},
            ca_bundle=ca_bundle,
            timeout=timeout,
            port=port,
        )
    except ssl.SSLCertVerificationError as exc:
        detail = f"{url} via {address}: TLS verification failed: {exc.verify_message}"
        return {"name": "public_endpoint", "ok": False, "detail": detail}
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return {"name": "public_endpoint", "ok": False, "detail": f"{url} via {address}: {exc}"}
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    version = payload.get("version") if isinstance(payload, dict) else None
    detail = f"HTTPS {status} via {address}" + (f", version {version}" if version else "")
    return {"name": "public_endpoint", "ok": status == 200, "detail": detail}
