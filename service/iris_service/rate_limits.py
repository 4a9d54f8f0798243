"""Requests per minute per key, counted by the ``limits`` library's fixed-window strategy.

The count must be shared by every worker on a host (later by every host). ``limits`` ships
storages for memory (one process only), redis, memcached and mongodb: none is shared between
the processes of one host without running a server. So the default storage is a small
``limits`` storage of our own on an SQLite file in the cache directory (``sqlite:///PATH``):
one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` per request, atomic across processes
(WAL journal, no fsync per write: a power cut may lose the last counts, which limits can
afford; writers take turns on an flock, see ``sqlite_files``).
``IRIS_RATE_LIMIT_STORAGE=redis://host:6379`` plugs in the library's own Redis storage
unchanged, which shares the counts between hosts. With the shared cache store
(``IRIS_CACHE_URL``) and no storage of its own, the counts live in that store, with this
SQLite storage as the host's fallback while it is down (``store_limits``).

Fixed window (one counter per key per minute) rather than a moving window: one write per
request; a client can at most double its limit across a window boundary.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from pathlib import Path

from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from iris_service.errors import ConfigError, TooManyRequests
from iris_service.sqlite_files import ProcessConnection

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters ("
    "key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL)"
)
# A new or expired counter starts again at ``amount`` with a new expiry; a live one adds.
_INCR = """
INSERT INTO counters (key, value, expires) VALUES (?1, ?2, ?3 + ?4)
ON CONFLICT (key) DO UPDATE SET
  value = CASE WHEN expires <= ?3 THEN ?2 ELSE value + ?2 END,
  expires = CASE WHEN expires <= ?3 THEN ?3 + ?4 ELSE expires END
RETURNING value
"""


class SQLiteStorage(Storage):
    """A ``limits`` storage on one SQLite file, shared by every process that opens it.

    One connection per process, shared by its threads (iris_service/sqlite_files.py).
    Expired rows are deleted by ``incr``, at most once a minute per process.
    """

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: float | str | bool):
        # As SQLAlchemy writes them: sqlite:///relative/file, sqlite:////absolute/file.
        path = uri.partition("://")[2].removeprefix("/")
        if not path:
            raise ConfigError(f"rate limit storage {uri!r}: no file (sqlite:///PATH)")
        self.path = Path(path)
        self._connection = ProcessConnection(self.path, _SCHEMA)
        self._next_purge = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (sqlite3.Error, OSError)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        (value,) = self._connection.write(_INCR, (key, amount, now, expiry))
        if now >= self._next_purge:
            self._next_purge = now + 60
            self._connection.delete("DELETE FROM counters WHERE expires <= ?", (now,))
        return int(value)

    def get(self, key: str) -> int:
        if not self.path.exists():  # nothing counted yet; a reader must not create the file
            return 0
        rows = self._connection.query(
            "SELECT value FROM counters WHERE key = ? AND expires > ?", (key, time.time())
        )
        return int(rows[0][0]) if rows else 0

    def get_expiry(self, key: str) -> float:
        if not self.path.exists():
            return time.time()
        rows = self._connection.query(
            "SELECT expires FROM counters WHERE key = ? AND expires > ?", (key, time.time())
        )
        return float(rows[0][0]) if rows else time.time()

    def check(self) -> bool:
        try:
            self._connection.query("SELECT 1")
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        return self._connection.delete("DELETE FROM counters")

    def clear(self, key: str) -> None:
        self._connection.delete("DELETE FROM counters WHERE key = ?", (key,))


_next_warning = 0.0


def warn_storage(error: Exception) -> None:
    """Log a storage failure, at most once a minute per process."""
    global _next_warning
    now = time.monotonic()
    if now >= _next_warning:
        _next_warning = now + 60
        log.warning("rate limit storage failed: %s", error.__cause__ or error)


def open_storage(uri: str) -> Storage:
    """The storage a ``IRIS_RATE_LIMIT_STORAGE`` URI names (``sqlite:///PATH``, ``redis://``)."""
    try:
        storage = storage_from_string(uri, wrap_exceptions=True)
    except Exception as error:  # limits raises ConfigurationError or the driver's ImportError
        raise ConfigError(f"IRIS_RATE_LIMIT_STORAGE={uri!r} cannot be used: {error}") from None
    assert isinstance(storage, Storage)
    return storage


class RateLimiter:
    """Requests per minute per key name; ``0`` means no limit."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._strategy = FixedWindowRateLimiter(storage)
        self._items: dict[int, RateLimitItemPerMinute] = {}

    def hit(self, name: str, per_minute: int) -> None:
        """Count one request of ``name``; ``TooManyRequests`` (429) over ``per_minute``."""
        if per_minute <= 0:
            return
        item = self._items.get(per_minute)
        if item is None:
            item = self._items.setdefault(per_minute, RateLimitItemPerMinute(per_minute))
        try:
            if self._strategy.hit(item, "key", name):
                return
            reset_at, _ = self._strategy.get_window_stats(item, "key", name)
        except StorageError as error:
            # Limits protect capacity; an unusable counter store must not stop serving.
            # (Keys are never skipped: they are checked before this.)
            warn_storage(error)
            return
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise TooManyRequests(
            f"Rate limit of key {name!r} exceeded ({per_minute} requests per minute); "
            f"retry in {retry_after} s",
            retry_after=retry_after,
            details={"limit": "rate", "key": name, "rate_per_minute": per_minute},
        )
