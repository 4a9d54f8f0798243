"""The model client's HTTP transport: only the network waits run inside the call's ``waiting``.

A model call holds its worker's cpu_gate while it runs Python code and gives it back while it
waits (iris_service/cpu_gate.py). The OpenAI SDK does real Python work on every call: it
builds and validates the request, then reads, decodes and validates the answer. Wrapping the
whole SDK call in ``waiting`` left that work outside the gate, so a burst of analyses starting
(or answered) together had a hundred threads taking turns on the GIL, and a health check
waited behind them. This transport narrows ``waiting`` to the send-and-wait for the answer's
head and to each read of its body: everything else runs holding the gate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import httpx2  # the HTTP library the OpenAI SDK is built on (its dependency)
from openai import DefaultHttpx2Client

if TYPE_CHECKING:  # agent imports this module when it builds its client
    from iris_service.agent import CallWaits

# The SDK's own default client's limits (httpx2's own default is 100 connections, fewer than
# one worker's 160 threads may have in flight to the model).
CONNECTION_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)

Waiting = Callable[[], AbstractContextManager[None]]


class WaitingStream(httpx2.SyncByteStream):
    """An answer body whose every read from the network runs inside ``waiting``."""

    def __init__(self, inner: httpx2.SyncByteStream, waiting: Waiting) -> None:
        self._inner = inner
        self._waiting = waiting

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        while True:
            with self._waiting():
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._inner.close()


class WaitingTransport(httpx2.BaseTransport):
    def __init__(self, waits: CallWaits) -> None:
        self._waits = waits
        self._inner = httpx2.HTTPTransport(limits=CONNECTION_LIMITS)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        waiting = self._waits.waiting  # read once: the same wrapper for the body's reads
        with waiting():  # send, then wait for the answer's head
            response = self._inner.handle_request(request)
        response.stream = WaitingStream(response.stream, waiting)  # type: ignore[arg-type]
        return response

    def close(self) -> None:
        self._inner.close()


def waiting_http_client(waits: CallWaits) -> Any:
    """The SDK's default HTTP client (its timeouts, limits, redirects) on a WaitingTransport."""
    return DefaultHttpx2Client(transport=WaitingTransport(waits))
