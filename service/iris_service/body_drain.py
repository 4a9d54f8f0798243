"""Read and discard what is left of a request body before the answer goes out.

An answer given without reading the body (413 over IRIS_MAX_BODY_BYTES, 401, 404, ...) is
followed by gunicorn closing the connection with the body still arriving; the kernel then
resets it, and nginx, which is still sending the body it buffered, reports a 502 instead of
our answer. Reading the rest first lets the proxy see the real answer.

Bounded: a body declared larger than ``DRAIN_MAX_BYTES`` is not read at all (nginx refuses
bodies over 10 MB itself), reading stops after that many bytes, and the socket reads are
limited to ``DRAIN_TIMEOUT_S`` in all, so a slow or stalled client cannot hold a thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

DRAIN_MAX_BYTES = 16 * 1024 * 1024
DRAIN_TIMEOUT_S = 10.0
_CHUNK_BYTES = 64 * 1024


def _declares_a_body(environ: dict[str, Any]) -> bool:
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return False


def discard_unread_body(
    environ: dict[str, Any],
    max_bytes: int = DRAIN_MAX_BYTES,
    timeout_s: float = DRAIN_TIMEOUT_S,
) -> int:
    """Read what is left of the request body, up to the bounds; returns the bytes read.

    Once a body has been read in full this costs a single empty read.
    """
    if not _declares_a_body(environ):
        return 0
    try:
        if int(environ.get("CONTENT_LENGTH") or 0) > max_bytes:
            return 0  # too much to be worth reading: the connection closes on it
    except ValueError:
        return 0
    stream = environ["wsgi.input"]
    sock: socket.socket | None = environ.get("gunicorn.socket")
    previous_timeout = sock.gettimeout() if sock is not None else None
    deadline = time.monotonic() + timeout_s
    drained = 0
    try:
        while drained < max_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info("stopped discarding a request body after %d bytes: too slow", drained)
                break
            if sock is not None:
                sock.settimeout(remaining)
            chunk = stream.read(min(_CHUNK_BYTES, max_bytes - drained))
            if not chunk:
                break
            drained += len(chunk)
    except Exception as error:  # noqa: BLE001 - timeout, reset, gunicorn's chunk parse errors
        # The answer is ready; failing to read a body we do not want must not replace it.
        log.info("stopped discarding a request body after %d bytes: %r", drained, error)
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):  # closed by the peer: nothing to restore
                sock.settimeout(previous_timeout)
    return drained


class DiscardUnreadBody:
    """WSGI middleware: runs the app, then drains the body before the response is sent.

    gunicorn sends nothing until the returned iterable is consumed, so the drain happens
    before the status line goes out.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        result = self.app(environ, start_response)
        discard_unread_body(environ)
        return result
