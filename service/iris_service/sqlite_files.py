"""SQLite files shared by every worker of a host: one connection per process.

A connection must not cross a fork (gunicorn forks after import), so each process opens its
own on first use. Its threads share it and take turns on a lock: every statement here is a
one-row lookup or update of microseconds, while a connection per thread cost +23 MB per
process at 160 threads (each keeps its own page cache and schema), measured in one process.
WAL journal and ``synchronous=NORMAL``: writers do not wait for readers and no write waits
for an fsync; a power cut may lose the last writes, which counters can afford.

Writers of different processes take turns on an flock of ``<file>.lock`` before they write:
SQLite's own busy handler sleeps 1 ms and more whenever two writers meet, while a waiter on
an flock is woken the moment the lock is free. Measured with two processes each writing one
counter every 0.2 ms: p99 of a write 1.7-2.9 ms with SQLite's waits, 0.1-0.3 ms with the flock.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ProcessConnection:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self._schema = schema
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._pid = 0

    def _connection(self) -> sqlite3.Connection:
        """This process's connection; the caller holds ``_lock``."""
        if self._db is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread off: the threads of this process share it, one at a time.
            db = sqlite3.connect(
                self.path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(self._schema)
            self._db, self._lock_fd, self._pid = db, None, os.getpid()
        return self._db

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Every row of one reading statement."""
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def write(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one writing statement, one writer at a time; its first row (``RETURNING``)."""
        return self._write(sql, params, lambda cursor: cursor.fetchone())

    def delete(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one deleting statement, one writer at a time; how many rows it removed."""
        return self._write(sql, params, lambda cursor: cursor.rowcount)

    def _write(self, sql: str, params: tuple[Any, ...], result: Callable[[sqlite3.Cursor], T]) -> T:
        with self._lock:
            db = self._connection()
            if self._lock_fd is None:  # only writers make it: a reader creates nothing
                self._lock_fd = os.open(
                    f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640
                )
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                return result(db.execute(sql, params))
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
