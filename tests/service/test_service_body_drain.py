"""Discarding an unread request body: all of it when small enough, never unbounded."""

import io
import socket
import time

from iris_service.body_drain import discard_unread_body


def _environ(body: bytes, **extra):
    return {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), **extra}


def test_the_unread_rest_of_a_body_is_read():
    environ = _environ(b"x" * 300_000)
    environ["wsgi.input"].read(1000)  # the app read a little
    assert discard_unread_body(environ) == 299_000
    assert environ["wsgi.input"].read() == b""


def test_a_body_already_read_costs_nothing_more():
    environ = _environ(b"{}")
    environ["wsgi.input"].read()
    assert discard_unread_body(environ) == 0


def test_requests_without_a_body_are_not_read():
    stream = io.BytesIO(b"next request bytes")
    assert discard_unread_body({"wsgi.input": stream}) == 0
    assert stream.tell() == 0


def test_a_body_declared_over_the_cap_is_not_read_at_all():
    environ = _environ(b"x" * 5000)
    assert discard_unread_body(environ, max_bytes=4096) == 0
    assert environ["wsgi.input"].tell() == 0


def test_a_chunked_body_is_read_only_up_to_the_cap():
    stream = io.BytesIO(b"x" * 500_000)
    environ = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": stream}
    assert discard_unread_body(environ, max_bytes=100_000) == 100_000


def test_a_stalled_client_is_given_up_on_at_the_deadline():
    server, client = socket.socketpair()
    with server, client:
        client.sendall(b"y" * 1000)  # then nothing more, connection left open
        environ = {
            "CONTENT_LENGTH": "1000000",
            "wsgi.input": server.makefile("rb", buffering=0),
            "gunicorn.socket": server,
        }
        started = time.monotonic()
        drained = discard_unread_body(environ, timeout_s=0.3)
        assert time.monotonic() - started < 10  # bounded by the deadline, not by the client
        assert drained == 1000
        assert server.gettimeout() is None  # the worker's socket is left blocking again
