"""Fixtures for the service tests: a model stand-in, moto, gunicorn, an EMF listener."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from iris_service.app import create_app
from iris_service.config import Settings
from irisctl.sandbox.model_standin import StandinHandle, start_standin
from service_helpers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_SCHEMAS = REPO_ROOT.parent / "shared" / "schemas"
API_KEY = "test-client-key"


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandinHandle]:
    handle = start_standin()
    yield handle
    handle.stop()


@pytest.fixture
def standin(standin_server: StandinHandle) -> StandinHandle:
    """The session's stand-in, with zero calls and default behaviour."""
    standin_server.reset()
    return standin_server


@pytest.fixture
def settings(tmp_path: Path, standin: StandinHandle) -> Settings:
    return Settings(
        openai_api_key="sk-test-openai",
        openai_base_url=standin.base_url,
        cache_dir=tmp_path / "iris",
        emf_file=tmp_path / "emf.log",
        model_timeout_s=10.0,
        model_retries=0,
        request_deadline_s=20.0,
    )


@pytest.fixture
def client(settings: Settings):
    return create_app(settings).test_client()


@pytest.fixture
def make_client() -> Callable[..., Any]:
    def build(settings: Settings):
        return create_app(settings).test_client()

    return build


@pytest.fixture(scope="session")
def emf_schema() -> dict[str, Any]:
    path = SHARED_SCHEMAS / "cloudwatch-emf-spec-schema.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared reference schemas are not checked out")
    return json.loads(path.read_text())


# --- AWS Secrets Manager: moto in server mode ------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """boto3 talks to moto over HTTP, through its own endpoint variable."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return moto_endpoint


# --- EMF: a real TCP listener -----------------------------------------------------------------


@dataclass
class EmfListener:
    server: socketserver.ThreadingTCPServer
    lines: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"tcp://{host}:{port}"

    def wait_for(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < end:
            time.sleep(0.02)
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def emf_listener() -> Iterator[EmfListener]:
    received: list[str] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                received.append(raw.decode().rstrip("\n"))

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield EmfListener(server, received)
    server.shutdown()
    server.server_close()


# --- gunicorn as a subprocess ---------------------------------------------------------------


@dataclass
class Gunicorn:
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    command = (
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:iris_service.gunicorn_conf",
        "iris_service.wsgi:app",
    )

    def start(self, timeout: float = 120.0) -> Gunicorn:
        # the bound is only against a hang: under a full CI run a first start takes seconds
        self.port = free_port()
        env = {**self.env, "IRIS_BIND": f"127.0.0.1:{self.port}"}
        self.process = subprocess.Popen(
            self.command,
            env=env,
            cwd=self.log_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.error_log()}")
            with contextlib.suppress(requests.RequestException):
                requests.get(self.url + "/api/iris/health", timeout=1)
                return self
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer:\n{self.error_log()}")

    def run_expecting_exit(self, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run gunicorn in the foreground until it exits by itself (stderr captured)."""
        self.port = free_port()
        return subprocess.run(
            self.command,
            env={**self.env, "IRIS_BIND": f"127.0.0.1:{self.port}"},
            cwd=self.log_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=35)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def error_log(self) -> str:
        path = self.log_dir / "error.log"
        return path.read_text()[-4000:] if path.exists() else "(no error log)"

    def post(self, body: Any, **kwargs: Any) -> requests.Response:
        headers = {"x-api-key": API_KEY, **kwargs.pop("headers", {})}
        return requests.post(
            self.url + "/api/iris/analyze", json=body, headers=headers, timeout=60, **kwargs
        )


@pytest.fixture
def gunicorn_factory(tmp_path: Path, standin: StandinHandle) -> Iterator[Callable[..., Gunicorn]]:
    """Build (not start) gunicorn services; all of them are stopped at teardown."""
    started: list[Gunicorn] = []

    def build(**overrides: str) -> Gunicorn:
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("IRIS_", "OPENAI_", "AWS_"))
        }
        env = {
            **base,
            "IRIS_ENV": "dev",
            "IRIS_API_KEY": API_KEY,
            "IRIS_CACHE_DIR": str(tmp_path / "iris"),
            "IRIS_EMF_FILE": str(tmp_path / "emf.log"),
            "IRIS_WORKERS": "2",
            "IRIS_THREADS": "8",
            "IRIS_ACCESS_LOG": str(tmp_path / "access.log"),
            "IRIS_ERROR_LOG": str(tmp_path / "error.log"),
            "IRIS_MODEL_RETRIES": "0",
            "OPENAI_API_KEY": "sk-test-openai",
            "OPENAI_BASE_URL": standin.base_url,
            **overrides,
        }
        server = Gunicorn(env=env, log_dir=tmp_path)
        started.append(server)
        return server

    yield build
    for server in started:
        server.stop()
