"""The host's SQLite counters: many threads of one process share one connection and lose no
update; a forked process opens its own."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from iris_service.rate_limits import SQLiteStorage

THREADS = 64


def open_files(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target == str(path)
    return count


def test_threads_share_one_connection_and_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "rates.sqlite"
    storage = SQLiteStorage(f"sqlite:///{path}")
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(lambda _: [storage.incr("k", 60) for _ in range(20)], range(THREADS)))
    assert storage.get("k") == THREADS * 20
    assert open_files(path) == 1  # a connection per thread would hold up to 64


def test_a_forked_process_opens_its_own_connection(tmp_path: Path) -> None:
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'rates.sqlite'}")
    storage.incr("k", 60)
    pid = os.fork()
    if pid == 0:  # the child adds through a connection of its own, then leaves without cleanup
        code = 0
        try:
            storage.incr("k", 60)
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert storage.get("k") == 2
