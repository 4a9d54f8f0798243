"""What each key has used on this host: requests, model calls, estimated cost, last use.

One row per key name in ``${IRIS_CACHE_DIR}/key_usage.sqlite``, shared by every worker. A
request only adds to a dict in its process; a daemon thread of each worker writes what was
added once a second (and at exit), one ``INSERT ... ON CONFLICT DO UPDATE`` per key used in
that second. Per request that is a dict update instead of an SQLite write (~15-20 us, see
``bench/keys_overhead.py``), and ``irisctl keys list`` is at most a second behind. Counts are
per host: ``irisctl keys list`` adds the hosts up. Like ``metrics.json`` these are operational
counters, not billing: a worker killed outright loses its last second, and an I/O error is
logged and never fails a request.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iris_service.flush_thread import FlushThread
from iris_service.sqlite_files import ProcessConnection

if TYPE_CHECKING:
    from iris_service.store_figures import SharedFigures

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS usage (name TEXT PRIMARY KEY, requests INTEGER NOT NULL, "
    "model_calls INTEGER NOT NULL, cost_usd REAL NOT NULL, last_used REAL NOT NULL)"
)
_ADD = """
INSERT INTO usage (name, requests, model_calls, cost_usd, last_used) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (name) DO UPDATE SET
  requests = requests + ?2, model_calls = model_calls + ?3, cost_usd = cost_usd + ?4,
  last_used = MAX(last_used, ?5)
"""


class KeyUsage:
    def __init__(self, path: Path, shared: SharedFigures | None = None) -> None:
        self.path = Path(path)
        self.shared = shared  # the fleet's per-host figures in the store, if any
        self._connection = ProcessConnection(self.path, _SCHEMA)
        self._lock = threading.Lock()
        self._pending: dict[str, list[float]] = {}  # name -> [requests, calls, cost, last]
        self._writer = FlushThread(self, "key-usage")

    def _add(self, name: str, requests: int, model_calls: int, cost_usd: float) -> None:
        now = time.time()
        with self._lock:
            row = self._pending.get(name)
            if row is None:
                row = self._pending[name] = [0, 0, 0.0, 0.0]
            row[0] += requests
            row[1] += model_calls
            row[2] += cost_usd
            row[3] = now
        self._writer.ensure_started()
        if self.shared is not None:
            self.shared.add_key(name, requests, model_calls, cost_usd)

    def flush(self) -> None:
        """Write the counts added since the last flush."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for name, (requests, calls, cost, last) in pending.items():
            try:
                self._connection.write(_ADD, (name, int(requests), int(calls), cost, last))
            except (sqlite3.Error, OSError) as error:
                log.warning("cannot update %s: %s", self.path, error)
                return

    def record_request(self, name: str) -> None:
        self._add(name, 1, 0, 0.0)

    def record_model_call(self, name: str, cost_usd: float) -> None:
        self._add(name, 0, 1, cost_usd)

    def read(self) -> dict[str, dict[str, Any]]:
        """Every key's counters by name (none when the file does not exist yet)."""
        if not self.path.exists():
            return {}
        rows = self._connection.query(
            "SELECT name, requests, model_calls, cost_usd, last_used FROM usage"
        )
        return {
            name: {
                "requests": requests,
                "model_calls": model_calls,
                "cost_usd": round(cost, 8),
                "last_used": datetime.fromtimestamp(last, UTC).isoformat(timespec="seconds"),
            }
            for name, requests, model_calls, cost, last in rows
        }
