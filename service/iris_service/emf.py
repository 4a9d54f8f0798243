"""CloudWatch Embedded Metric Format events, sent to the CloudWatch agent or a file.

We serialize EMF ourselves rather than use ``aws-embedded-metrics``: its flush is asyncio
based, its configuration is a process-global read from AWS_EMF_* variables, it adds its own
default dimensions (LogGroup, ServiceName, ServiceType), it has no file sink, and its TCP
client connects without a timeout and retries inline. Here one event is one bare JSON line,
and a missing listener costs a request at most one short connect timeout, after which sends
are skipped for a back-off period.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from iris_service.config import Settings

log = logging.getLogger(__name__)

NAMESPACE = "IRIS/Analysis"
CONNECT_TIMEOUT_S = 0.2
BACKOFF_S = 15.0

UNITS = {
    "CodeLengthChars": "Count",
    "EstimatedInputTokens": "Count",
    "TotalPromptTokens": "Count",
    "CacheHit": "Count",
    "TotalLatencyMs": "Milliseconds",
    "InputTokens": "Count",
    "OutputTokens": "Count",
    "EstimatedCostUsd": "None",
    "ResponsibilityBlockCount": "Count",
    "FailureCount": "Count",
    "LatencyUntilFailureMs": "Milliseconds",
}

EVENTS = {
    "analysis_requested": ("CodeLengthChars", "EstimatedInputTokens"),
    "analysis_started": ("TotalPromptTokens", "CacheHit"),
    "analysis_completed": (
        "TotalLatencyMs",
        "InputTokens",
        "OutputTokens",
        "EstimatedCostUsd",
        "ResponsibilityBlockCount",
    ),
    "analysis_failed": ("FailureCount", "LatencyUntilFailureMs"),
}


def build_event(
    event: str,
    values: dict[str, float],
    *,
    environment: str,
    endpoint: str,
    error_type: str | None = None,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """One EMF document: dimensions and metric values as root members, directives in _aws."""
    names = EVENTS[event]
    missing = set(names) - set(values)
    if missing:
        raise ValueError(f"{event} needs {sorted(missing)}")
    dimensions = {"Environment": environment, "Endpoint": endpoint}
    if error_type is not None:
        dimensions["ErrorType"] = error_type
    return {
        "_aws": {
            "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": UNITS[name]} for name in names],
                }
            ],
        },
        **dimensions,
        "event": event,
        **{name: values[name] for name in names},
    }


def to_line(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, separators=(",", ":")) + "\n").encode()


class EmfEmitter:
    """Sends events; never raises and never blocks a request for long."""

    def __init__(self, settings: Settings) -> None:
        self.environment = settings.env
        self.file = settings.emf_file
        endpoint = urlparse(settings.emf_endpoint)
        self._scheme = endpoint.scheme or "tcp"
        self._address = (endpoint.hostname or "127.0.0.1", endpoint.port or 25888)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self.dropped = 0

    def emit(
        self,
        event: str,
        values: dict[str, float],
        *,
        endpoint: str = "analyze",
        error_type: str | None = None,
    ) -> None:
        try:
            line = to_line(
                build_event(
                    event,
                    values,
                    environment=self.environment,
                    endpoint=endpoint,
                    error_type=error_type,
                )
            )
            if self.file is not None:
                self._append(self.file, line)
            else:
                self._send(line)
        except Exception as error:  # metrics are best effort by design
            self.dropped += 1
            log.debug("EMF event %s dropped: %s", event, error)

    @staticmethod
    def _append(path: Path, line: bytes) -> None:
        # One write() on an O_APPEND descriptor: lines from several workers never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _send(self, line: bytes) -> None:
        with self._lock:
            if time.monotonic() < self._down_until:
                self.dropped += 1
                return
            for attempt in range(2):  # a kept-open socket may have gone stale: reconnect once
                try:
                    if self._sock is None:
                        self._sock = self._connect()
                    self._sock.sendall(line)
                    return
                except OSError as error:
                    self._close()
                    if attempt == 1 or isinstance(error, TimeoutError | ConnectionRefusedError):
                        self._down_until = time.monotonic() + BACKOFF_S
                        self.dropped += 1
                        log.warning("EMF listener %s:%s unavailable: %s", *self._address, error)
                        return

    def _connect(self) -> socket.socket:
        kind = socket.SOCK_DGRAM if self._scheme == "udp" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(self._address)
        except OSError:
            sock.close()
            raise
        return sock

    def _close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close()
