"""A real redis-server on loopback for the shared cache tier's tests, and two "hosts" on it.

The server runs with the fleet's ACL shape: user ``iris`` with a password, the ``default``
user off, no persistence. ``kill()`` is SIGKILL (a crash, not a shutdown); ``start()`` brings
it back on the same port.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from iris_service import store, store_figures
from iris_service.config import Settings
from service_helpers import free_port

REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (make install adds it)"
)


@dataclass
class RedisServer:
    workdir: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    tls: bool = False  # TLS only (rediss://), with a CA of its own: ``ca_file``

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://iris@127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.pem"

    def client(self) -> redis.Redis:
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.ca_file)} if self.tls else {}
        return redis.Redis(
            host="127.0.0.1", port=self.port, username="iris", password=self.password, **tls
        )

    def _certificates(self) -> str:
        """A CA and a server certificate for 127.0.0.1 (openssl); the TLS config lines."""
        d = self.workdir
        if not self.ca_file.exists():

            def openssl(*args: str) -> None:
                subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                    "-out", "ca.pem", "-days", "1", "-subj", "/CN=iris-test-ca")  # fmt: skip
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
                    "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
            (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
            openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", "server.pem", "-days", "1",
                    "-extfile", "san.ext")  # fmt: skip
        return (
            f"port 0\ntls-port {self.port}\ntls-cert-file {d / 'server.pem'}\n"
            f"tls-key-file {d / 'server.key'}\ntls-ca-cert-file {d / 'ca.pem'}\n"
            "tls-auth-clients no\n"
        )

    def start(self, timeout: float = 10.0) -> RedisServer:
        config = self.workdir / "redis.conf"
        listen = self._certificates() if self.tls else f"port {self.port}\n"
        config.write_text(
            f'{listen}bind 127.0.0.1\nsave ""\nappendonly no\n'
            f"dir {self.workdir}\nuser default off\n"
            f"user iris on >{self.password} ~* &* +@all\n"
        )
        config.chmod(0o600)
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def running_redis(tmp_path: Path, tls: bool = False) -> Iterator[RedisServer]:
    """A started server (the test modules' ``redis_server`` fixture); killed afterwards."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (make install adds it)")
    workdir = tmp_path / ("redis-tls" if tls else "redis")
    workdir.mkdir()
    server = RedisServer(workdir, tls=tls).start()
    try:
        yield server
    finally:
        server.kill()
        # Each test's stores are its own (their up/down state must not leak into the next).
        store._stores.clear()
        store_figures._figures.clear()


def host_settings(base: Settings, server: RedisServer, host: str, **changes: object) -> Settings:
    """``base`` as the app host ``host``: its own cache dir, the shared store."""
    shared: dict[str, object] = {
        "cache_dir": base.cache_dir / host,
        "host_name": host,
        "cache_url": server.url,
        "cache_password": server.password,
        "cache_timeout_s": 0.25,
    }
    return base.with_changes(**{**shared, **changes})
