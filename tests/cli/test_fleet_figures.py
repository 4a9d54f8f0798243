"""``irisctl cache stats`` and ``keys list`` with a shared cache store: the fleet's total plus a
per-host breakdown, from what ``iris-service-admin cache stats`` and ``key_admin`` report
(service/iris_service/store_admin.py), played by fake hosts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from irisctl.ops.target import Target

COUNTERS = {
    "hits": 0,
    "misses": 0,
    "model_calls": 0,
    "model_errors": 0,
    "input_tokens": 0,
    "cached_tokens": 0,
    "output_tokens": 0,
    "cost_spent_usd": 0.0,
    "cost_saved_usd": 0.0,
}


def counters(hits: int, misses: int, cost: float) -> dict[str, Any]:
    lookups = hits + misses
    return {
        **COUNTERS,
        "hits": hits,
        "misses": misses,
        "model_calls": misses,
        "cost_spent_usd": cost,
        "hit_rate": round(hits / lookups, 4) if lookups else 0.0,
    }


SHARED = {
    "url": "redis://iris@10.231.0.30:6379/0",
    "entries": 3,
    "used_memory_bytes": 1048576,
    "maxmemory_bytes": 268435456,
    "eviction_policy": "allkeys-lru",
    "fleet": counters(3, 3, 0.003),
    "hosts": {"iris-sandbox-1": counters(1, 2, 0.002), "iris-sandbox-2": counters(2, 1, 0.001)},
}


def stats_reports(shared: dict[str, Any]) -> dict[str, Any]:
    return {
        host: {
            "rc": 0,
            "result": {"entries": 2, "bytes": 100, **counters(1, 1, 0.1), "shared": shared},
        }
        for host in ("iris-sandbox-1", "iris-sandbox-2")
    }


@pytest.fixture
def cache_stats(invoke, local_inventory: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def run(shared: dict[str, Any], *args: str):  # type: ignore[no-untyped-def]
        reports = stats_reports(shared)
        monkeypatch.setattr(Target, "reports", lambda self, playbook, **kw: reports)
        return invoke("-i", str(local_inventory), "cache", "stats", *args)

    return run


def test_cache_stats_json_has_the_fleet_once_and_each_hosts_own_figures(cache_stats) -> None:  # type: ignore[no-untyped-def]
    result = cache_stats(SHARED, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["fleet"] == SHARED
    assert [h["host"] for h in data["hosts"]] == ["iris-sandbox-1", "iris-sandbox-2"]
    assert all("shared" not in h for h in data["hosts"])


def test_cache_stats_table_shows_each_host_in_the_store_and_the_fleet_total(cache_stats) -> None:  # type: ignore[no-untyped-def]
    result = cache_stats(SHARED)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "IRIS fleet" in out and "3 entries" in out and "allkeys" not in out
    assert "fleet" in out and "iris-sandbox-1" in out
    assert "50.0%" in out  # the fleet's hit rate: 3 of 6
    assert "$0.003000" in out


def test_cache_stats_say_when_the_store_cannot_be_read(cache_stats) -> None:  # type: ignore[no-untyped-def]
    down = {"url": SHARED["url"], "error": "shared cache store unavailable: Connection refused"}
    result = cache_stats(down)
    assert result.exit_code == 0
    assert "Connection refused" in result.stdout and "IRIS cache" in result.stdout


def test_keys_list_takes_the_fleet_and_each_host_from_the_store(
    invoke, local_inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    use = {"requests": 2, "model_calls": 1, "cost_usd": 0.25, "last_used": None}
    shared = {
        "url": SHARED["url"],
        "keys": {},
        "hosts": {
            "iris-sandbox-1": {"default": {**use, "last_used": "2026-01-01T10:00:00+00:00"}},
            "iris-sandbox-2": {"default": {**use, "requests": 5}},
            "iris-sandbox-9": {"default": {**use, "requests": 1}},  # gone from the inventory
        },
        "spent_today_by_host": {"iris-sandbox-1": {"*": 0.1, "default": 0.1}},
    }
    usage = {
        "keys": {"default": {**use, "spent_today_usd": 0.75, "daily_budget_usd": None}},
        "global": {"spent_today_usd": 0.75, "daily_budget_usd": None, "budget_resets_at": "x"},
        "storage": "shared",
        "shared": shared,
    }
    reports = {
        host: {"file": "", "file_error": "file not found", "usage": usage}
        for host in ("iris-sandbox-1", "iris-sandbox-2")
    }
    monkeypatch.setattr(Target, "reports", lambda self, playbook, **kw: reports)
    result = invoke("-i", str(local_inventory), "keys", "list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (default,) = data["keys"]
    assert default["requests"] == 8 and default["model_calls"] == 3
    assert default["spent_today_usd"] == 0.75  # one shared day's spend, not added up
    assert [h["host"] for h in default["by_host"]] == [
        "iris-sandbox-1",
        "iris-sandbox-2",
        "iris-sandbox-9",
    ]
    assert default["by_host"][0]["spent_today_usd"] == 0.1
    assert data["by_host_from"] == "shared store"
    table = invoke("-i", str(local_inventory), "keys", "list")
    assert table.exit_code == 0
    assert "per host (shared store)" in table.stdout and "iris-sandbox-9" in table.stdout
