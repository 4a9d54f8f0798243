"""Helpers for the fleet stories: a fleet sandbox (app hosts, cache store, load balancer) and
steady traffic through the balancer that records every answer."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_helpers import API_KEY, Sandbox
from irisctl.public import https_request
from irisctl.sandbox import hosts
from irisctl.sandbox.hosts import Host

IRISCTL = str(Path(sys.executable).parent / "irisctl")


def source(tag: str, delay_s: float = 0.0) -> str:
    """A source file of its own (its own cache entry); the model stand-in answers it after
    ``delay_s`` seconds."""
    marker = f"# IRIS-STANDIN: delay={delay_s}\n" if delay_s else ""
    return f"{marker}def fleet_{tag}(value):\n    return value + 1\n"


def analysis_body(text: str) -> bytes:
    return json.dumps({"filename": "f.py", "language": "python", "source_code": text}).encode()


@dataclass
class Fleet(Sandbox):
    """The fleet sandbox: ``apps`` behind ``balancer``, sharing ``store``."""

    @property
    def apps(self) -> list[Host]:
        return self.info.hosts

    @property
    def store(self) -> Host:
        assert self.info.store is not None
        return self.info.store

    @property
    def balancer(self) -> Host:
        assert self.info.balancer is not None
        return self.info.balancer

    def model_calls(self) -> int:
        """Model calls the fleet's own model stand-in answered so far."""
        import urllib.request

        url = f"{self.info.model_url}/_standin/stats"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(json.load(answer)["calls"])

    def request(
        self, host: Host, method: str, path: str, body: bytes | None = None, timeout: float = 30
    ) -> tuple[int, bytes]:
        """One HTTPS request to ``host``'s public name (TLS verified against pebble's root)."""
        headers = {"x-api-key": API_KEY, "content-type": "application/json"}
        return https_request(
            host.fqdn,
            host.ip,
            method,
            path,
            body=body,
            headers=headers,
            ca_bundle=str(self.pebble_roots),
            timeout=timeout,
        )

    def analyze(self, host: Host, text: str, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        status, raw = self.request(host, "POST", "/api/iris/analyze", analysis_body(text), timeout)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"raw": raw[:200].decode("utf-8", "replace")}

    def ssh(self, host: Host, command: str, timeout: float = 60) -> str:
        argv = [*hosts.ssh_command(host, "root"), command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
        return done.stdout.strip()

    def irisctl(self, *args: str, env: dict[str, str], timeout: float = 900) -> Any:
        return subprocess.run(
            [IRISCTL, *args], env=env, capture_output=True, text=True, timeout=timeout
        )


@dataclass
class Traffic:
    """Clients sending analyses through the balancer until stopped: a mix of cache hits and
    new sources (model calls). Every answer is counted; a failed one is kept with its cause."""

    fleet: Fleet
    clients: int = 4
    answers: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Traffic:
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(number,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.answers.values()) + len(self.failures)

    def wait_for(self, count: int, timeout: float = 120) -> None:
        """Until ``count`` more answers arrived (traffic really flows), or fail."""
        target = self.total + count
        deadline = time.monotonic() + timeout
        while self.total < target:
            assert time.monotonic() < deadline, f"traffic stalled at {self.total} answers"
            time.sleep(0.1)

    def _client(self, number: int) -> None:
        sent = 0
        while not self._stop.is_set():
            sent += 1
            # two hits for every new source: the model stays busy but not flooded
            tag = f"c{number}-{sent}" if sent % 3 == 0 else f"c{number}-steady"
            try:
                status, body = self.fleet.analyze(self.fleet.balancer, source(tag), timeout=60)
            except Exception as error:  # noqa: BLE001 - every failure is recorded, not raised
                with self._lock:
                    self.failures.append(f"{type(error).__name__}: {error}")
                continue
            with self._lock:
                if status == 200:
                    self.answers[status] += 1
                else:
                    self.failures.append(f"{status}: {json.dumps(body)[:200]}")
