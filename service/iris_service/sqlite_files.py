"""SQLite files shared by every worker of a host: one connection per thread and process.

A connection must not cross a fork (gunicorn forks after import) nor be shared by threads
mid-statement, so each thread opens its own on first use in each process. WAL journal and
``synchronous=NORMAL``: writers do not wait for readers and no write waits for an fsync; a
power cut may lose the last writes, which counters can afford.

Writers take turns on an flock of ``<file>.lock`` (one open file per thread, so threads exclude
each other too) before they write: SQLite's own busy handler sleeps 1 ms and more whenever two
writers meet, while a waiter on an flock is woken the moment the lock is free. Measured with
two processes each writing one counter every 0.2 ms: p99 of a write 1.7-2.9 ms with SQLite's
waits, 0.1-0.3 ms with the flock.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any


class ThreadConnections:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self._schema = schema
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(self._schema)
            self._local.db, self._local.lock_fd, self._local.pid = db, None, os.getpid()
        return db

    def write(self, sql: str, params: tuple[Any, ...]) -> Any:
        """Run one writing statement, one writer at a time; its first row (``RETURNING``)."""
        db = self.get()
        fd = self._local.lock_fd
        if fd is None:  # only writers make it: a reader (the admin tool) creates nothing
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self._local.lock_fd = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return db.execute(sql, params).fetchone()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
