"""One request's Python work at a time per worker, so health never waits behind a crowd.

A gthread worker runs every request in its own thread, and all of them share one GIL. With
hundreds of analyses in flight, a burst of arrivals (or of model answers) leaves a hundred
threads wanting the GIL at once; CPython hands it over every 5 ms to whichever waiter wakes,
so a health check needing a few GIL turns waited behind all of them (measured: 0.8-1.5 s at
256 in flight). The gate is a semaphore with one slot per worker: a request holds it while it
runs Python code and gives it back while it waits (on the model, on another worker's identical
analysis), so only one analysis thread competes with a health check at any moment. The GIL
allowed no more than one of them to run anyway, so throughput is unchanged; what changes is
that a health check waits for one slice of work instead of every thread's.

``GET /api/iris/health`` never takes the gate (``CpuGateMiddleware``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

HEALTH_PATH = "/api/iris/health"


class CpuGate:
    def __init__(self, slots: int = 1) -> None:
        self._slots = threading.Semaphore(slots)
        self._held = threading.local()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._slots.acquire()
        self._held.depth = getattr(self._held, "depth", 0) + 1
        try:
            yield
        finally:
            self._held.depth -= 1
            self._slots.release()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Give the slot back while this thread waits; no-op in a thread that does not hold it
        (tests, the admin tool, code run outside a request)."""
        if getattr(self._held, "depth", 0) <= 0:
            yield
            return
        self._slots.release()
        try:
            yield
        finally:
            self._slots.acquire()


class CpuGateMiddleware:
    """WSGI: every request but a health check runs holding the gate.

    Outermost, so Flask's own request handling is inside it too. The response body is sent
    by gunicorn after we return, outside the gate.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], gate: CpuGate) -> None:
        self.app = app
        self.gate = gate

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            return self.app(environ, start_response)
        with self.gate.held():
            return self.app(environ, start_response)
