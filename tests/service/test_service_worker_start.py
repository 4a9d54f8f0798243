"""What a worker does before its first request: every thread started, shorter GIL turns, the
model client's first-call costs paid (none of it may touch the network or fail the start)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from iris_service import gunicorn_conf, model_warmup
from iris_service.config import Settings
from service_helpers import wait_until


def _worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def test_every_thread_of_a_worker_exists_before_its_first_analysis(gunicorn_factory):
    server = gunicorn_factory(IRIS_WORKERS="1", IRIS_THREADS="12").start()
    assert requests.get(server.url + "/api/iris/health", timeout=5).status_code == 200
    workers = wait_until(lambda: _worker_pids(server.process.pid), timeout=10)
    # One health check needs one pool thread; started on demand there would be 1 (+ main).
    assert _threads(workers[0]) >= 12 + 1


def test_worker_start_hook_shortens_gil_turns_and_starts_the_pool():
    pool = ThreadPoolExecutor(max_workers=7)
    worker = SimpleNamespace(cfg=SimpleNamespace(threads=7), tpool=pool, log=logging.getLogger())
    before = sys.getswitchinterval()
    try:
        gunicorn_conf.post_worker_init(worker)
        assert sys.getswitchinterval() == pytest.approx(gunicorn_conf.GIL_SWITCH_INTERVAL_S)
        assert len(pool._threads) == 7  # noqa: SLF001 - what the hook is for
        # The threads were released: the pool serves at once.
        assert pool.submit(threading.get_ident).result(timeout=5)
    finally:
        sys.setswitchinterval(before)
        pool.shutdown()


def test_worker_start_hook_leaves_a_sync_worker_alone():
    worker = SimpleNamespace(cfg=SimpleNamespace(threads=1), log=logging.getLogger())  # no pool
    before = sys.getswitchinterval()
    try:
        gunicorn_conf.post_worker_init(worker)
    finally:
        sys.setswitchinterval(before)


WARM_IN_A_FRESH_PROCESS = """
import socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("the warm-up touched the network")
socket.socket.connect = refuse
socket.create_connection = refuse
from iris_service.config import Settings
from iris_service.model_warmup import warm_model_client
assert "openai.resources.responses.responses" not in sys.modules
warm_model_client(Settings.from_env())
assert "openai.resources.responses.responses" in sys.modules, "the SDK's resource not loaded"
"""


def test_model_warm_up_loads_the_sdk_without_touching_the_network(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", WARM_IN_A_FRESH_PROCESS],
        capture_output=True,
        text=True,
        timeout=60,
        env={"IRIS_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "warm-up failed" not in done.stderr


def test_a_failed_model_warm_up_is_logged_and_not_raised(tmp_path, monkeypatch, caplog):
    def broken(_text):
        raise ValueError("unexpected reply")

    monkeypatch.setattr(model_warmup, "parse_reply", broken)
    with caplog.at_level(logging.WARNING, logger="iris_service.model_warmup"):
        seconds = model_warmup.warm_model_client(
            Settings.from_env({"IRIS_CACHE_DIR": str(tmp_path)})
        )
    assert seconds >= 0
    assert "model client warm-up failed: ValueError: unexpected reply" in caplog.text
