"""The shared store's settings: one clear line for a bad one, the password from the
environment or from Secrets Manager (moto), read by the child-process reader."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from iris_service.config import Settings
from iris_service.errors import ConfigError
from iris_service.secrets import SecretError, fetch_cache_password
from iris_service.startup_check import config_problem
from store_helpers import RedisServer, host_settings, running_redis


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:6379", "must start with redis:// or rediss://"),
        ("127.0.0.1:6379", "must start with redis:// or rediss://"),
        ("redis://127.0.0.1:notaport", "is not a valid URL"),
        ("redis://:6379", "names no host"),
        ("redis://127.0.0.1:6379/zero", "the path must be a database number"),
        ("redis://127.0.0.1:6379/0?ssl_cert_reqs=none", "no query options"),
    ],
)
def test_a_malformed_cache_url_is_one_clear_line(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        Settings.from_env({"IRIS_CACHE_URL": url})
    assert "\n" not in str(caught.value)
    problem = config_problem({"IRIS_CACHE_URL": url})
    assert problem is not None and says in problem


def test_a_password_in_the_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="must not carry the password") as caught:
        Settings.from_env({"IRIS_CACHE_URL": "redis://iris:hunter2@10.0.0.1:6379/0"})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "says"),
    [("abc", "must be a number"), ("0", "must be >= 0.001"), ("30", "at most 5 s")],
)
def test_a_bad_cache_timeout_is_one_clear_line(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings.from_env(
            {"IRIS_CACHE_URL": "redis://iris@127.0.0.1:6379/0", "IRIS_CACHE_TIMEOUT_S": value}
        )


def test_a_ca_file_needs_rediss_and_must_be_readable(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    with pytest.raises(ConfigError, match="only used with IRIS_CACHE_URL=rediss://"):
        Settings.from_env({"IRIS_CACHE_URL": "redis://h:6379", "IRIS_CACHE_CA_FILE": str(ca)})
    with pytest.raises(ConfigError, match="is not a readable file"):
        Settings.from_env(
            {"IRIS_CACHE_URL": "rediss://h:6379", "IRIS_CACHE_CA_FILE": str(tmp_path / "no")}
        )
    settings = Settings.from_env(
        {"IRIS_CACHE_URL": "rediss://iris@h:6380/0", "IRIS_CACHE_CA_FILE": str(ca)}
    )
    assert settings.cache_ca_file == ca and settings.cache_timeout_s == 0.25


def test_the_store_settings_are_read_and_the_password_never_shown() -> None:
    settings = Settings.from_env(
        {
            "IRIS_CACHE_URL": "redis://iris@10.231.0.30:6379/0",
            "IRIS_CACHE_PASSWORD": "pw-from-env",
            "IRIS_CACHE_TIMEOUT_S": "0.1",
            "IRIS_HOST_NAME": "app-1",
        }
    )
    assert settings.cache_url == "redis://iris@10.231.0.30:6379/0"
    assert settings.cache_timeout_s == 0.1 and settings.host_name == "app-1"
    assert fetch_cache_password(settings) == "pw-from-env"
    assert "pw-from-env" not in repr(settings)


def test_no_cache_url_means_no_store() -> None:
    settings = Settings.from_env({})
    assert settings.cache_url is None and fetch_cache_password(settings) is None


def put_secret(secret_id: str, value: str) -> None:
    client = boto3.client("secretsmanager", region_name="us-east-2")
    try:
        client.create_secret(Name=secret_id, SecretString=value)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=secret_id, SecretString=value)


@pytest.mark.parametrize("stored", ["plain", "json"])
def test_the_password_comes_from_the_secret(
    aws_env: str, request: pytest.FixtureRequest, stored: str
) -> None:
    secret_id = f"iris/cache-store-password-{request.node.name}"[:200]
    value = "store-pw-0123456789"
    put_secret(secret_id, value if stored == "plain" else json.dumps({"password": value}))
    settings = Settings(cache_url="redis://iris@h:6379/0", cache_password_secret_id=secret_id)
    assert fetch_cache_password(settings) == value


def test_a_missing_secret_names_the_secret_only(aws_env: str) -> None:
    settings = Settings(cache_url="redis://iris@h:6379/0", cache_password_secret_id="iris/none")
    with pytest.raises(SecretError, match="iris/none"):
        fetch_cache_password(settings)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def test_the_service_reaches_the_store_with_the_password_from_the_secret(
    aws_env: str, settings: Settings, redis_server: RedisServer
) -> None:
    from iris_service.store import SharedStore

    put_secret("iris/cache-store-password-e2e", redis_server.password)
    store = SharedStore(
        host_settings(
            settings,
            redis_server,
            "host-a",
            cache_password=None,
            cache_password_secret_id="iris/cache-store-password-e2e",
        )
    )
    assert store.call(lambda client: client.ping(), False) is True
    assert store.check()["ok"] is True


def test_an_unreadable_password_secret_degrades_and_the_service_serves(
    aws_env: str, settings: Settings, redis_server: RedisServer, standin: Any
) -> None:
    from iris_service.app import create_app
    from service_helpers import analyze_body, sample_source

    app = create_app(
        host_settings(
            settings,
            redis_server,
            "host-a",
            cache_password=None,
            cache_password_secret_id="iris/no-such-secret",
        )
    )
    client = app.test_client()
    answer = client.post("/api/iris/analyze", json=analyze_body(sample_source("nosecret")))
    assert answer.status_code == 200
    health = client.get("/api/iris/health")
    assert health.status_code == 200 and health.json["status"] == "degraded"
    assert "iris/no-such-secret" in health.json["checks"]["cache_store"]["error"]


def test_a_store_that_never_answers_costs_one_timeout_then_nothing(
    settings: Settings, standin: Any
) -> None:
    """A slow store (accepts, never answers) is skipped after IRIS_CACHE_TIMEOUT_S."""
    from iris_service.app import create_app
    from service_helpers import analyze_body, sample_source

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        client = create_app(
            settings.with_changes(
                cache_dir=settings.cache_dir / "slow",
                host_name="host-slow",
                cache_url=f"redis://iris@127.0.0.1:{port}/0",
                cache_password="pw",
                cache_timeout_s=0.2,
            )
        ).test_client()
        started = time.monotonic()
        first = client.post("/api/iris/analyze", json=analyze_body(sample_source("slow")))
        first_s = time.monotonic() - started
        assert first.status_code == 200 and first_s < 2.0
        started = time.monotonic()
        for _ in range(5):
            answer = client.post("/api/iris/analyze", json=analyze_body(sample_source("slow")))
            assert answer.status_code == 200 and answer.json["metadata"]["cache_hit"] == 1
        assert time.monotonic() - started < 1.0  # no store call per request while it is down
        health = client.get("/api/iris/health")
        assert health.status_code == 200
        assert "Timeout" in health.json["checks"]["cache_store"]["error"]


def test_rediss_with_the_stores_ca_file_is_used_and_another_ca_is_refused(
    settings: Settings, tmp_path: Path, standin: Any
) -> None:
    from iris_service.app import create_app
    from service_helpers import analyze_body, sample_source

    with running_redis(tmp_path, tls=True) as server:
        good = host_settings(settings, server, "host-a", cache_ca_file=server.ca_file)
        client = create_app(good).test_client()
        answer = client.post("/api/iris/analyze", json=analyze_body(sample_source("tls")))
        assert answer.status_code == 200
        assert client.get("/api/iris/health").json["checks"]["cache_store"]["ok"] is True
        assert len(server.client().keys("iris:entry:*")) == 1  # stored over TLS
        # Any other CA (here: the system's) does not vouch for this server: degraded, served.
        other = host_settings(settings, server, "host-b", cache_ca_file=None)
        client_b = create_app(other).test_client()
        again = client_b.post("/api/iris/analyze", json=analyze_body(sample_source("tls")))
        assert again.status_code == 200
        check = client_b.get("/api/iris/health").json["checks"]["cache_store"]
        assert check["ok"] is False and "certificate" in check["error"].lower()
