"""Two gunicorn services ("hosts", 2 workers each) sharing one real redis-server: one model
call for identical concurrent requests on both, and the admin tool's fleet figures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from irisctl.sandbox.model_standin import StandinHandle
from service_helpers import analyze_body, sample_source, wait_until
from store_helpers import RedisServer, needs_redis, running_redis

pytestmark = needs_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def test_two_gunicorn_hosts_make_one_model_call_and_report_one_fleet(
    gunicorn_factory: Callable[..., Any],
    redis_server: RedisServer,
    standin: StandinHandle,
    tmp_path: Path,
) -> None:
    standin.configure(delay_s=0.5)
    hosts = []
    for name in ("host-a", "host-b"):
        hosts.append(
            gunicorn_factory(
                IRIS_CACHE_DIR=str(tmp_path / name),
                IRIS_HOST_NAME=name,
                IRIS_CACHE_URL=redis_server.url,
                IRIS_CACHE_PASSWORD=redis_server.password,
                IRIS_ERROR_LOG=str(tmp_path / f"{name}-error.log"),
                IRIS_ACCESS_LOG=str(tmp_path / f"{name}-access.log"),
            ).start()
        )
    source = sample_source("gunicorn")
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: hosts[i % 2].post(analyze_body(source)), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert standin.calls() == 1
    env = {**hosts[1].env, "PATH": "/usr/bin:/bin"}

    def fleet() -> dict[str, Any] | None:
        out = subprocess.run(
            [sys.executable, "-m", "iris_service.admin", "cache", "stats"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        shared = json.loads(out.stdout)["shared"]
        counted = shared["fleet"]["hits"] + shared["fleet"]["misses"]
        return shared if counted == 8 else None

    shared = wait_until(fleet, timeout=15, poll_s=0.5)
    assert shared, "the workers' figures did not reach the store"
    assert shared["fleet"]["model_calls"] == 1 and shared["fleet"]["hits"] == 7
    assert set(shared["hosts"]) == {"host-a", "host-b"}
    for host in hosts:
        health = requests.get(host.url + "/api/iris/health", timeout=5).json()
        assert health["checks"]["cache_store"]["ok"] is True
    for name in ("host-a", "host-b"):
        log = (tmp_path / f"{name}-error.log").read_text()
        assert redis_server.password not in log
        assert "unavailable" not in log
