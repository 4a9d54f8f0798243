"""CloudWatch Embedded Metric Format events, sent to the CloudWatch agent or a file.

We serialize EMF ourselves rather than use ``aws-embedded-metrics``: its flush is asyncio
based, its configuration is a process-global read from AWS_EMF_* variables, it adds its own
default dimensions (LogGroup, ServiceName, ServiceType), it has no file sink, and its TCP
client connects without a timeout and retries inline. Here one event is one bare JSON line,
and a missing listener costs a request at most one short connect timeout, after which sends
are skipped for a back-off period.

Both sinks keep one handle per process: the socket stays connected, and the file stays open
(O_APPEND) instead of an open and close per event (measured ~20 us of the ~25 us an event
cost). The file is reopened after a write fails, and when its path names another file
(logrotate renamed it and created a new one), which is checked at most once a second.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from iris_service.config import Settings

log = logging.getLogger(__name__)

NAMESPACE = "IRIS/Analysis"
CONNECT_TIMEOUT_S = 0.2
BACKOFF_S = 15.0
REOPEN_CHECK_S = 1.0  # how often the file sink checks that its path still names its file

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


# One encoder for every event: json.dumps with any option builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def to_line(document: dict[str, Any]) -> bytes:
    return (_ENCODER.encode(document) + "\n").encode()


@functools.lru_cache(maxsize=256)
def _line_parts(
    event: str, environment: str, endpoint: str, error_type: str | None
) -> tuple[str, str, tuple[str, ...]]:
    """The parts of ``to_line(build_event(...))`` that do not change from event to event:
    the text up to the timestamp, the text after it up to the first value, each value's key."""
    template = build_event(
        event,
        dict.fromkeys(EVENTS[event], 0),
        environment=environment,
        endpoint=endpoint,
        error_type=error_type,
        timestamp_ms=0,
    )
    directives = _ENCODER.encode(template["_aws"]["CloudWatchMetrics"])
    members = {k: v for k, v in template.items() if k != "_aws" and k not in EVENTS[event]}
    middle = f',"CloudWatchMetrics":{directives}}},{_ENCODER.encode(members)[1:-1]},'
    keys = tuple(_ENCODER.encode(name) + ":" for name in EVENTS[event])
    return '{"_aws":{"Timestamp":', middle, keys


def _value(value: Any) -> str:
    """What json writes for one value: repr for plain ints and finite floats, as json does."""
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    return _ENCODER.encode(value)


def event_line(
    event: str,
    values: dict[str, float],
    *,
    environment: str,
    endpoint: str,
    error_type: str | None = None,
    timestamp_ms: int | None = None,
) -> bytes:
    """``to_line(build_event(...))``, byte for byte, without building and encoding the whole
    document each time: only the timestamp and the values are encoded per event."""
    head, middle, keys = _line_parts(event, environment, endpoint, error_type)
    try:
        encoded = [
            key + _value(values[name]) for key, name in zip(keys, EVENTS[event], strict=True)
        ]
    except KeyError:
        build_event(event, values, environment=environment, endpoint=endpoint)  # names them
        raise
    stamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    return f"{head}{stamp}{middle}{','.join(encoded)}}}\n".encode()


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
        self._file_lock = threading.Lock()
        self._fd: int | None = None
        self._fd_pid = 0  # a forked child opens its own
        self._fd_id: tuple[int, int] = (0, 0)
        self._fd_checked = 0.0

    def emit(
        self,
        event: str,
        values: dict[str, float],
        *,
        endpoint: str = "analyze",
        error_type: str | None = None,
    ) -> None:
        self.emit_together([(event, values)], endpoint=endpoint, error_type=error_type)

    def emit_together(
        self,
        events: Sequence[tuple[str, dict[str, float]]],
        *,
        endpoint: str = "analyze",
        error_type: str | None = None,
    ) -> None:
        """Several events in one write to the file or the TCP stream (one system call: behind
        gunicorn each one hands the GIL over, which a cache hit's three events paid three
        times); over UDP one datagram per event, as the agent reads them."""
        try:
            lines = [
                event_line(
                    event,
                    values,
                    environment=self.environment,
                    endpoint=endpoint,
                    error_type=error_type,
                )
                for event, values in events
            ]
            if self.file is not None:
                self._append(self.file, b"".join(lines))
            elif self._scheme == "udp":
                for line in lines:
                    self._send(line)
            else:
                self._send(b"".join(lines), len(lines))
        except Exception as error:  # metrics are best effort by design
            self.dropped += len(events)
            log.debug("EMF events %s dropped: %s", [event for event, _ in events], error)

    def _append(self, path: Path, line: bytes) -> None:
        # One write() on an O_APPEND descriptor: lines from several workers never interleave
        # (``line`` may be several lines: one request's events).
        with self._file_lock:  # held across the write: no other thread closes the fd under it
            try:
                os.write(self._file_fd(path), line)
            except OSError:
                self._close_file()
                os.write(self._file_fd(path), line)  # once more on a fresh handle, else dropped

    def _file_fd(self, path: Path) -> int:
        now = time.monotonic()
        if self._fd is not None and self._fd_pid == os.getpid():
            if now - self._fd_checked < REOPEN_CHECK_S:
                return self._fd
            self._fd_checked = now
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == self._fd_id:
                    return self._fd
            except OSError:
                pass
            self._close_file()
        elif self._fd is not None:
            self._fd = None  # the parent's descriptor: left to the parent
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        st = os.fstat(fd)
        self._fd, self._fd_pid, self._fd_id = fd, os.getpid(), (st.st_dev, st.st_ino)
        self._fd_checked = now
        return fd

    def _close_file(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None

    def _send(self, line: bytes, events: int = 1) -> None:
        with self._lock:
            if time.monotonic() < self._down_until:
                self.dropped += events
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
                        self.dropped += events
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
        with self._file_lock:
            self._close_file()
