"""gthread with a lane of its own for health checks.

A connection accepted on the health socket (``IRIS_HEALTH_BIND``, hosts: 127.0.0.1:8081) is
handled by a small thread pool of its own instead of joining the end of the request queue.

Why: gthread hands every accepted connection to one thread pool, whose queue is first in,
first out. A burst of 256 analyses puts about 128 connections in each worker's queue at
once, and each is taken off it by a thread that must first get the GIL, which a hundred
others want at that moment. A health check accepted just after them waited until all of them
had been taken: measured, 122 ms from hand-over to handling, and 21 ms of handling, for a
health answer of 160 ms (256 analyses of a 2 s model, served directly; cpu_gate.py and the
health socket of its own already in place). In its lane it is picked up at once.

This relies on gthread's ``enqueue_req``, ``handle``, ``finish_request`` and
``method_queue`` (gunicorn 27); ``tests/service/test_service_health_lane.py`` fails if they
change.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

HEALTH_THREADS = 2


def health_address(bind: str | None = None) -> tuple[str, int] | None:
    """(host, port) of ``IRIS_HEALTH_BIND`` (``HOST:PORT``, ``[V6]:PORT``); None when unset."""
    bind = os.environ.get("IRIS_HEALTH_BIND", "") if bind is None else bind
    if not bind:
        return None
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


class HealthLaneThreadWorker(ThreadWorker):
    def init_process(self) -> None:
        self.health_address = health_address()
        self.health_pool = ThreadPoolExecutor(HEALTH_THREADS, thread_name_prefix="health")
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        # conn.server: the listening socket's getsockname(), (host, port[, flow, scope])
        if self.health_address is None or tuple(conn.server[:2]) != self.health_address:
            super().enqueue_req(conn)
            return
        done = self.health_pool.submit(self.handle, conn)
        done.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))
