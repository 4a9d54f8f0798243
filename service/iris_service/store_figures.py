"""The fleet's figures in the shared store, kept per host: cache counters (hits, misses,
tokens, cost) and each key's requests, model calls, cost and last use.

Keys (``store.PREFIX``): ``iris:hosts`` (set of host names), ``iris:stats:<host>`` (hash of
the ``metrics.COUNTERS`` plus ``since``/``updated_at``), ``iris:usage:<host>`` (hash,
``<key name>|requests`` / ``|model_calls`` / ``|cost_usd``), ``iris:last-used:<host>``
(sorted set: key name -> last use, ``ZADD GT``). The fleet total is the sum over the hosts.

A request only adds to dicts in its process (like ``key_usage``); a thread of each worker
writes them once a second (and at exit) in one pipelined transaction, so the hit path pays no
store round trip and the fleet figures are at most a second behind. The host's exact counters
stay in ``metrics.json`` and ``key_usage.sqlite`` as before. While the store is down nothing
is sent and the sums wait in the process: they arrive when it is back (a worker that dies
meanwhile loses its part; operational counters, not billing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from iris_service.config import Settings
from iris_service.flush_thread import FlushThread
from iris_service.metrics import COUNTERS
from iris_service.store import PREFIX, SharedStore, shared_store

HOSTS = f"{PREFIX}hosts"
STATS = f"{PREFIX}stats:"
USAGE = f"{PREFIX}usage:"
LAST_USED = f"{PREFIX}last-used:"
USAGE_FIELDS = ("requests", "model_calls", "cost_usd")
_FLOAT_COUNTERS = frozenset({"cost_spent_usd", "cost_saved_usd"})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SharedFigures:
    def __init__(self, store: SharedStore) -> None:
        self.store = store
        self.host = store.host
        self._lock = threading.Lock()
        self._counters: dict[str, float] = {}
        self._keys: dict[str, list[float]] = {}  # name -> [requests, calls, cost, last]
        self._writer = FlushThread(self, "store-figures")

    # --- writing (per request: dict updates only) --------------------------------------

    def add_counters(self, deltas: Mapping[str, float]) -> None:
        with self._lock:
            for name, value in deltas.items():
                self._counters[name] = self._counters.get(name, 0) + value
        self._writer.ensure_started()

    def add_key(self, name: str, requests: int, model_calls: int, cost_usd: float) -> None:
        with self._lock:
            row = self._keys.get(name)
            if row is None:
                row = self._keys[name] = [0, 0, 0.0, 0.0]
            row[0] += requests
            row[1] += model_calls
            row[2] += cost_usd
            row[3] = time.time()
        self._writer.ensure_started()

    def flush(self) -> bool:
        """Send what was added since the last flush; kept for the next one when it fails."""
        with self._lock:
            counters, self._counters = self._counters, {}
            keys, self._keys = self._keys, {}
        if not counters and not keys:
            return True
        if self.store.call(lambda client: self._write(client, counters, keys), False):
            return True
        with self._lock:  # the store is away: these wait for it, added to what came since
            for name, value in counters.items():
                self._counters[name] = self._counters.get(name, 0) + value
            for name, (requests, calls, cost, last) in keys.items():
                row = self._keys.setdefault(name, [0, 0, 0.0, 0.0])
                row[0] += requests
                row[1] += calls
                row[2] += cost
                row[3] = max(row[3], last)
        return False

    def _write(
        self, client: redis.Redis, counters: dict[str, float], keys: dict[str, list[float]]
    ) -> bool:
        pipe = client.pipeline(transaction=True)
        pipe.sadd(HOSTS, self.host)
        stats = STATS + self.host
        for name, value in counters.items():
            if name in _FLOAT_COUNTERS:
                pipe.hincrbyfloat(stats, name, value)
            else:
                pipe.hincrby(stats, name, int(value))
        if counters:
            now = _now_iso()
            pipe.hsetnx(stats, "since", now)
            pipe.hset(stats, "updated_at", now)
        usage = USAGE + self.host
        for name, (requests, calls, cost, last) in keys.items():
            pipe.hincrby(usage, f"{name}|requests", int(requests))
            pipe.hincrby(usage, f"{name}|model_calls", int(calls))
            pipe.hincrbyfloat(usage, f"{name}|cost_usd", cost)
            pipe.zadd(LAST_USED + self.host, {name: last}, gt=True)
        pipe.execute()
        return True

    # --- reading (admin tools) ---------------------------------------------------------

    def hosts(self) -> list[str]:
        members = self.store.call(lambda client: client.smembers(HOSTS), None)
        if members is None:
            raise ConnectionError(f"shared cache store {self.store.url} unavailable")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def _hash(self, key: str) -> dict[str, str]:
        raw = self.store.call(lambda client: client.hgetall(key), None)
        if raw is None:
            raise ConnectionError(f"shared cache store {self.store.url} unavailable")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def _last_used(self, host: str) -> list[tuple[str, float]]:
        key = LAST_USED + host
        pairs = self.store.call(lambda client: client.zrange(key, 0, -1, withscores=True), [])
        return [(name.decode(), float(epoch)) for name, epoch in pairs]

    def read_counters(self) -> dict[str, dict[str, Any]]:
        """Each host's cache counters."""
        report = {}
        for host in self.hosts():
            raw = self._hash(STATS + host)
            counters: dict[str, Any] = {
                name: (float if name in _FLOAT_COUNTERS else int)(raw.get(name, 0))
                for name in COUNTERS
            }
            counters["since"] = raw.get("since")
            counters["updated_at"] = raw.get("updated_at")
            report[host] = counters
        return report

    def read_keys(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Each host's use of each key: ``{host: {name: {requests, model_calls, ...}}}``."""
        report: dict[str, dict[str, dict[str, Any]]] = {}
        for host in self.hosts():
            used: dict[str, dict[str, Any]] = {}
            for field, value in self._hash(USAGE + host).items():
                name, _, what = field.rpartition("|")
                row = used.setdefault(name, {"requests": 0, "model_calls": 0, "cost_usd": 0.0})
                row[what] = round(float(value), 8) if what == "cost_usd" else int(value)
            for name, epoch in self._last_used(host):
                if name in used:
                    when = datetime.fromtimestamp(epoch, UTC)
                    used[name]["last_used"] = when.isoformat(timespec="seconds")
            report[host] = used
        return report


def fleet_total(per_host: Mapping[str, Mapping[str, Any]], fields: tuple[str, ...]) -> dict:
    """The sum of ``fields`` over the hosts."""
    return {name: sum(row.get(name, 0) for row in per_host.values()) for name in fields}


_figures: dict[int, SharedFigures] = {}
_figures_lock = threading.Lock()


def shared_figures(settings: Settings) -> SharedFigures | None:
    """This process's figures for ``settings``' store (None without ``IRIS_CACHE_URL``)."""
    store = shared_store(settings)
    if store is None:
        return None
    with _figures_lock:
        figures = _figures.get(id(store))
        if figures is None:
            figures = _figures[id(store)] = SharedFigures(store)
        return figures
