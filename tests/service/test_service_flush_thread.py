"""The per-process writer thread behind key use and the fleet's figures."""

from __future__ import annotations

import functools
import gc
import threading
import time

from iris_service.flush_thread import FlushThread


class Counts:
    def __init__(self) -> None:
        self.flushes = 0
        self.writer = FlushThread(self, "test-writer")

    def flush(self) -> None:
        self.flushes += 1


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "test-writer"]


def test_one_writer_per_process_flushes_every_second_and_ends_with_its_owner() -> None:
    counts = Counts()
    before = len(writers())
    for _ in range(5):
        counts.writer.ensure_started()
    assert len(writers()) == before + 1
    wait_until(functools.partial(lambda c: c.flushes >= 2, counts))
    del counts
    gc.collect()
    wait_until(lambda: len(writers()) == before)
