"""SQLite files shared by every worker of a host: one connection per thread and process.

A connection must not cross a fork (gunicorn forks after import) nor be shared by threads
mid-statement, so each thread opens its own on first use in each process. WAL journal and
``synchronous=NORMAL``: writers do not wait for readers and no write waits for an fsync; a
power cut may lose the last writes, which counters can afford.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path


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
            self._local.db, self._local.pid = db, os.getpid()
        return db
