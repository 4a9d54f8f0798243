"""What each key has used on this host: requests, model calls, estimated cost, last use.

One row per key name in ``${IRIS_CACHE_DIR}/key_usage.sqlite``, shared by every worker; one
``INSERT ... ON CONFLICT DO UPDATE`` per request (~13 us, WAL journal, no fsync per write).
Counts are per host: ``irisctl keys list`` adds the hosts up. Like ``metrics.json`` these are
operational counters, not billing: an I/O error is logged and never fails a request.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iris_service.sqlite_files import ThreadConnections

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
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._connections = ThreadConnections(self.path, _SCHEMA)

    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def _add(self, name: str, requests: int, model_calls: int, cost_usd: float) -> None:
        try:
            self._connections.write(_ADD, (name, requests, model_calls, cost_usd, time.time()))
        except (sqlite3.Error, OSError) as error:
            log.warning("cannot update %s: %s", self.path, error)

    def record_request(self, name: str) -> None:
        self._add(name, 1, 0, 0.0)

    def record_model_call(self, name: str, cost_usd: float) -> None:
        self._add(name, 0, 1, cost_usd)

    def read(self) -> dict[str, dict[str, Any]]:
        """Every key's counters by name (none when the file does not exist yet)."""
        if not self.path.exists():
            return {}
        rows = (
            self._db()
            .execute("SELECT name, requests, model_calls, cost_usd, last_used FROM usage")
            .fetchall()
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
