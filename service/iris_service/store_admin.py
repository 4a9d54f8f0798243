"""The shared store as ``iris-service-admin`` and ``key_admin`` report it: the fleet's figures
with a per-host breakdown, the entries the store holds, clearing and inspecting them.

Every function returns ``None`` without ``IRIS_CACHE_URL``. An unreachable store is reported
as ``{"url", "error"}`` (the host's own figures are still printed by the caller), never as a
failed command.
"""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import RedisError

from iris_service.cache import CacheEntry
from iris_service.cache_shared import ENTRY_PREFIX, SharedTier
from iris_service.config import Settings
from iris_service.metrics import COUNTERS
from iris_service.secrets import SecretError
from iris_service.store import SharedStore, shared_store
from iris_service.store_figures import USAGE_FIELDS, SharedFigures, fleet_total

_SCAN_COUNT = 1000


def _with_rates(counters: dict[str, Any]) -> dict[str, Any]:
    lookups = counters["hits"] + counters["misses"]
    counters["hit_rate"] = round(counters["hits"] / lookups, 4) if lookups else 0.0
    for name in ("cost_spent_usd", "cost_saved_usd"):
        counters[name] = round(counters[name], 8)
    return counters


def _unavailable(store: SharedStore, error: Exception) -> dict[str, Any]:
    return {"url": store.url, "error": f"shared cache store unavailable: {error}"}


def shared_cache_stats(settings: Settings) -> dict[str, Any] | None:
    """The fleet's cache counters, each host's, and what the store holds."""
    store = shared_store(settings)
    if store is None:
        return None
    try:
        client = store.client()
        per_host = SharedFigures(store).read_counters()
        entries = sum(1 for _ in client.scan_iter(match=ENTRY_PREFIX + "*", count=_SCAN_COUNT))
        memory = client.info("memory")
    except (RedisError, SecretError, ConnectionError) as error:
        return _unavailable(store, error)
    return {
        "url": store.url,
        "entries": entries,
        "used_memory_bytes": memory.get("used_memory"),
        "maxmemory_bytes": memory.get("maxmemory"),
        "eviction_policy": memory.get("maxmemory_policy"),
        "fleet": _with_rates(fleet_total(per_host, COUNTERS)),
        "hosts": {host: _with_rates(counters) for host, counters in per_host.items()},
    }


def shared_key_usage(settings: Settings) -> dict[str, Any] | None:
    """Each key's use in the fleet and on each host (from the store)."""
    store = shared_store(settings)
    if store is None:
        return None
    try:
        per_host = SharedFigures(store).read_keys()
    except (RedisError, SecretError, ConnectionError) as error:
        return _unavailable(store, error)
    names = sorted({name for used in per_host.values() for name in used})
    fleet = {}
    for name in names:
        rows = {host: used[name] for host, used in per_host.items() if name in used}
        total = fleet_total(rows, USAGE_FIELDS)
        total["cost_usd"] = round(total["cost_usd"], 8)
        total["last_used"] = max((r.get("last_used") or "" for r in rows.values()), default="")
        total["last_used"] = total["last_used"] or None
        fleet[name] = total
    return {"url": store.url, "keys": fleet, "hosts": per_host}


def _tier(settings: Settings) -> SharedTier | None:
    store = shared_store(settings)
    return None if store is None else SharedTier(store, settings.cache_ttl_s)


def clear_shared(settings: Settings, older_than_s: float | None) -> int | None:
    """Remove the store's entries (all, or created more than ``older_than_s`` ago)."""
    tier = _tier(settings)
    if tier is None:
        return None
    client = tier.store.client()
    removed = 0
    now = time.time()
    for name in client.scan_iter(match=ENTRY_PREFIX + "*", count=_SCAN_COUNT):
        if older_than_s is not None:
            raw = client.get(name)
            try:
                created = CacheEntry.from_json(raw).created_at if raw else float("-inf")
            except (ValueError, KeyError, TypeError):
                created = float("-inf")  # unreadable entries are always old enough
            if now - created <= older_than_s:
                continue
        removed += int(client.unlink(name))
    return removed


def inspect_shared(settings: Settings, key: str) -> CacheEntry | None:
    tier = _tier(settings)
    return None if tier is None else tier.get(key)
