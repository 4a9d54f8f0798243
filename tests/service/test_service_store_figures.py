"""The fleet's figures in the shared store (real redis-server, two app "hosts"): cache
counters and key use per host and in total, rate counts shared by the hosts and kept on the
host while the store is down, the admin tool's view, clearing the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from iris_service import admin, key_admin
from iris_service.app import create_app
from iris_service.cache_shared import ENTRY_PREFIX
from iris_service.config import Settings
from irisctl.sandbox.model_standin import StandinHandle
from service_helpers import analyze_body, sample_source, wait_until
from store_helpers import RedisServer, host_settings, needs_redis, running_redis

pytestmark = needs_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def post(client: Any, source: str) -> Any:
    return client.post("/api/iris/analyze", json=analyze_body(source))


def two_hosts(settings: Settings, server: RedisServer, **changes: object) -> list[Any]:
    return [
        create_app(host_settings(settings, server, host, **changes)).test_client()
        for host in ("host-a", "host-b")
    ]


def test_cache_stats_give_the_fleet_total_and_each_host(
    settings: Settings, redis_server: RedisServer, standin: StandinHandle
) -> None:
    a, b = two_hosts(settings, redis_server)
    assert post(a, sample_source("one")).json["metadata"]["cache_hit"] == 0
    assert post(a, sample_source("two")).json["metadata"]["cache_hit"] == 0
    assert post(b, sample_source("one")).json["metadata"]["cache_hit"] == 1
    assert post(b, sample_source("three")).json["metadata"]["cache_hit"] == 0
    as_a = host_settings(settings, redis_server, "host-a")

    def shared() -> dict[str, Any] | None:
        found = admin.cache_stats(as_a)["shared"]
        return found if found["fleet"]["hits"] + found["fleet"]["misses"] == 4 else None

    stats = wait_until(shared, timeout=10)  # each worker sends its sums once a second
    assert stats, admin.cache_stats(as_a)
    assert stats["fleet"]["hits"] == 1 and stats["fleet"]["misses"] == 3
    assert stats["fleet"]["model_calls"] == 3 == standin.calls()
    assert stats["fleet"]["hit_rate"] == 0.25
    assert stats["hosts"]["host-a"]["misses"] == 2 and stats["hosts"]["host-a"]["hits"] == 0
    assert stats["hosts"]["host-b"]["misses"] == 1 and stats["hosts"]["host-b"]["hits"] == 1
    assert stats["fleet"]["cost_spent_usd"] > 0
    assert stats["entries"] == 3 and stats["used_memory_bytes"] > 0
    assert "password" not in str(stats)


def test_keys_report_each_keys_use_in_the_fleet_and_per_host(
    settings: Settings, redis_server: RedisServer
) -> None:
    a, b = two_hosts(settings, redis_server)
    for client, tag in ((a, "k1"), (a, "k2"), (b, "k1"), (b, "k3"), (b, "k4")):
        assert post(client, sample_source(tag)).status_code == 200
    as_b = host_settings(settings, redis_server, "host-b")

    def report() -> dict[str, Any] | None:
        found = key_admin.key_report(as_b)
        keys = found["shared"]["keys"]
        return found if keys.get("default", {}).get("requests") == 5 else None

    found = wait_until(report, timeout=10)
    assert found, key_admin.key_report(as_b)
    shared = found["shared"]
    assert shared["keys"]["default"]["model_calls"] == 4
    assert shared["keys"]["default"]["last_used"]
    assert shared["hosts"]["host-a"]["default"]["requests"] == 2
    assert shared["hosts"]["host-b"]["default"]["requests"] == 3
    assert shared["hosts"]["host-b"]["default"]["model_calls"] == 2
    assert found["storage"] == "shared"
    # Today's spend: the fleet's, and each host's part of it.
    by_host = shared["spent_today_by_host"]
    assert by_host["host-a"]["default"] > 0 and by_host["host-b"]["default"] > 0
    total = found["global"]["spent_today_usd"]
    assert total == pytest.approx(by_host["host-a"]["*"] + by_host["host-b"]["*"], abs=1e-8)


def wait_for_room_in_this_minute() -> None:
    """The rate window is the clock's minute: start a count where it cannot roll over."""
    assert wait_until(lambda: time.time() % 60 < 45, timeout=20)


def test_a_keys_rate_is_counted_once_for_the_fleet(
    settings: Settings, redis_server: RedisServer
) -> None:
    a, b = two_hosts(settings, redis_server, rate_limit_per_minute=3)
    wait_for_room_in_this_minute()
    assert [post(c, sample_source("r")).status_code for c in (a, b, a)] == [200] * 3
    over = post(b, sample_source("r"))
    assert over.status_code == 429 and over.json["limit"] == "rate"


def test_with_the_store_down_rates_count_on_the_host_and_never_fall_open(
    settings: Settings, redis_server: RedisServer
) -> None:
    a, b = two_hosts(settings, redis_server, rate_limit_per_minute=2)
    wait_for_room_in_this_minute()
    assert post(a, sample_source("d")).status_code == 200
    redis_server.kill()
    # The store's count is gone with it; host-a's own storage counts from here: 2 more, then 429.
    statuses = [post(a, sample_source("d")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert post(b, sample_source("d")).status_code == 200  # host-b counts on its own
    health = a.get("/api/iris/health")
    assert health.status_code == 200 and health.json["status"] == "degraded"


def test_clearing_the_cache_clears_the_store_too(
    settings: Settings, redis_server: RedisServer, standin: StandinHandle
) -> None:
    a, b = two_hosts(settings, redis_server)
    for tag in ("c1", "c2"):
        assert post(a, sample_source(tag)).status_code == 200
    as_b = host_settings(settings, redis_server, "host-b")
    assert admin.cache_clear(as_b, None) == {"removed": 0, "removed_shared": 2}
    assert redis_server.client().keys(ENTRY_PREFIX + "*") == []
    assert post(b, sample_source("c1")).json["metadata"]["cache_hit"] == 0
    assert standin.calls() == 3


def test_an_entry_from_a_hosts_disk_reaches_the_store(
    settings: Settings, redis_server: RedisServer, standin: StandinHandle
) -> None:
    """Entries made before the store (or restored from a backup) are not lost to the fleet."""
    source = sample_source("before")
    alone = create_app(settings.with_changes(cache_dir=settings.cache_dir / "host-a"))
    assert post(alone.test_client(), source).json["metadata"]["cache_hit"] == 0
    a, b = two_hosts(settings, redis_server)
    assert post(a, source).json["metadata"]["cache_hit"] == 1  # from host-a's disk
    assert post(b, source).json["metadata"]["cache_hit"] == 1  # through the store
    assert standin.calls() == 1
