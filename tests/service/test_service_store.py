"""The shared cache tier against a real redis-server: two app "hosts" (two Flask apps with
their own host names and cache directories) sharing one store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from iris_service.app import create_app
from iris_service.cache_key import key_for
from iris_service.cache_shared import ENTRY_PREFIX, LOCK_PREFIX
from iris_service.config import Settings
from iris_service.source import normalize_source
from irisctl.sandbox.model_standin import StandinHandle
from service_helpers import analyze_body, sample_source, wait_until
from store_helpers import RedisServer, host_settings, needs_redis, running_redis

pytestmark = needs_redis
STORE_LOGGER = "iris_service.store"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def post(client: Any, source: str) -> Any:
    return client.post("/api/iris/analyze", json=analyze_body(source))


def entry_key(settings: Settings, source: str) -> str:
    return key_for(settings, normalize_source(source), "python")


@pytest.fixture
def hosts(settings: Settings, redis_server: RedisServer) -> tuple[Any, Any]:
    a = create_app(host_settings(settings, redis_server, "host-a")).test_client()
    b = create_app(host_settings(settings, redis_server, "host-b")).test_client()
    return a, b


def test_an_analysis_cached_through_host_a_is_a_hit_on_host_b(
    hosts: tuple[Any, Any], settings: Settings, redis_server: RedisServer, standin: StandinHandle
) -> None:
    a, b = hosts
    source = sample_source("shared")
    first = post(a, source)
    assert first.status_code == 200 and first.json["metadata"]["cache_hit"] == 0
    second = post(b, source)
    assert second.status_code == 200
    assert second.json["metadata"]["cache_hit"] == 1
    assert second.json["responsibility_blocks"] == first.json["responsibility_blocks"]
    assert standin.calls() == 1
    # Same JSON as a disk entry, with the configured TTL (30 days) set in the store.
    key = entry_key(settings, source)
    ttl = redis_server.client().ttl(ENTRY_PREFIX + key)
    assert 30 * 86400 - 60 < ttl <= 30 * 86400
    on_disk = (settings.cache_dir / "host-a" / "cache" / key[:2] / f"{key}.json").read_bytes()
    assert redis_server.client().get(ENTRY_PREFIX + key) == on_disk


def test_identical_concurrent_requests_on_two_hosts_make_one_model_call(
    hosts: tuple[Any, Any], standin: StandinHandle
) -> None:
    a, b = hosts
    standin.configure(delay_s=0.5)
    source = sample_source("together")
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: post((a, b)[i % 2], source), range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert standin.calls() == 1
    assert sorted(r.json["metadata"]["cache_hit"] for r in answers) == [0] + [1] * 7


def test_a_crashed_holders_lock_stops_nobody_past_its_expiry(
    settings: Settings, redis_server: RedisServer, standin: StandinHandle
) -> None:
    app = create_app(host_settings(settings, redis_server, "host-a"))
    app.extensions["iris"].cache.shared.lock_ttl_s = 1.0
    source = sample_source("orphan")
    # A holder that died mid-computation: its lock stays until the store expires it.
    redis_server.client().set(LOCK_PREFIX + entry_key(settings, source), "dead-holder", px=800)
    started = time.monotonic()
    answer = post(app.test_client(), source)
    assert answer.status_code == 200 and answer.json["metadata"]["cache_hit"] == 0
    assert 0.5 < time.monotonic() - started < 5
    assert standin.calls() == 1


def test_the_lock_is_released_by_its_holder_only(
    settings: Settings, redis_server: RedisServer
) -> None:
    app = create_app(host_settings(settings, redis_server, "host-a"))
    source = sample_source("released")
    assert post(app.test_client(), source).status_code == 200
    assert redis_server.client().exists(LOCK_PREFIX + entry_key(settings, source)) == 0


def store_lines(
    caplog: pytest.LogCaptureFixture, server: RedisServer, host: str, word: str
) -> list[str]:
    """This server's store lines of ``host`` (earlier tests' apps may still be flushing)."""
    return [
        message
        for r in caplog.records
        if r.name == STORE_LOGGER
        and server.url in (message := r.getMessage())
        and f" on {host} " in message
        and word in message
    ]


def test_the_store_killed_and_restarted_under_requests_is_no_outage(
    hosts: tuple[Any, Any],
    redis_server: RedisServer,
    standin: StandinHandle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="iris_service")
    a, b = hosts
    statuses: list[int] = []
    stop = threading.Event()

    def stream() -> None:
        n = 0
        while not stop.is_set() and n < 2000:
            for client in (a, b):
                statuses.append(post(client, sample_source(f"stream{n % 7}")).status_code)
            n += 1

    worker = threading.Thread(target=stream)
    worker.start()
    try:
        assert wait_until(lambda: len(statuses) >= 10, timeout=20)
        redis_server.kill()
        for client in (a, b):
            health = wait_until(
                lambda c=client: (
                    (h := c.get("/api/iris/health")).json["status"] == "degraded" and h
                ),
                timeout=10,
            )
            assert health and health.status_code == 200
            assert health.json["checks"]["cache_store"]["ok"] is False
        during = len(statuses)
        assert wait_until(lambda: len(statuses) >= during + 10, timeout=20)
        redis_server.start()
        for client in (a, b):
            assert wait_until(
                lambda c=client: c.get("/api/iris/health").json["checks"]["cache_store"]["ok"],
                timeout=15,
            )
        after = len(statuses)
        assert wait_until(lambda: len(statuses) >= after + 10, timeout=20)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert set(statuses) == {200}, sorted(set(statuses))
    for host in ("host-a", "host-b"):
        assert len(store_lines(caplog, redis_server, host, "unavailable")) == 1
        assert len(store_lines(caplog, redis_server, host, "is back on")) == 1


def test_a_wrong_password_degrades_with_one_clear_line_and_serves(
    settings: Settings,
    redis_server: RedisServer,
    standin: StandinHandle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="iris_service")
    wrong = "not-the-password"
    client = create_app(
        host_settings(settings, redis_server, "host-a", cache_password=wrong)
    ).test_client()
    for n in range(3):
        assert post(client, sample_source(f"wrongpw{n}")).status_code == 200
    health = client.get("/api/iris/health")
    assert health.status_code == 200 and health.json["status"] == "degraded"
    check = health.json["checks"]["cache_store"]
    assert check["ok"] is False and "credentials" in check["error"]
    lines = store_lines(caplog, redis_server, "host-a", "unavailable")
    assert len(lines) == 1 and "refused the credentials" in lines[0]
    assert all(wrong not in r.getMessage() for r in caplog.records)
    assert wrong not in health.get_data(as_text=True)


def test_health_reports_the_store_up(hosts: tuple[Any, Any]) -> None:
    health = hosts[0].get("/api/iris/health")
    assert health.status_code == 200 and health.json["status"] == "ok"
    assert health.json["checks"]["cache_store"] == {
        "ok": True,
        "state": "up",
        "url": health.json["checks"]["cache_store"]["url"],
        "host": "host-a",
    }
    assert ":***@" not in health.json["checks"]["cache_store"]["url"]


def test_without_a_store_health_has_no_store_check(client: Any) -> None:
    assert "checks" not in client.get("/api/iris/health").json
