"""Named API keys, per-key rate limits and daily model budgets (in process, and under a real
gunicorn with 2 workers for the count every worker shares)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from iris_service import admin, key_admin
from iris_service.api_keys import KeyRing, KeysFileError, load_keys_file
from iris_service.config import Settings
from iris_service.key_usage import KeyUsage
from iris_service.rate_limits import SQLiteStorage
from iris_service.startup_check import EXIT_BAD_CONFIG, config_problem
from service_helpers import analyze_body, sample_source, wait_until

ANALYZE = "/api/iris/analyze"
DEFAULT_KEY = "test-client-key"


def write_keys(path: Path, keys: dict[str, dict[str, Any]], revision: int = 1) -> None:
    """A keys file as irisctl writes it, replaced atomically; ``keys`` name -> {key, limits}."""
    entries = {
        name: {
            "sha256": hashlib.sha256(spec["key"].encode()).hexdigest(),
            "created": "2026-01-01T00:00:00+00:00",
            **{k: v for k, v in spec.items() if k != "key"},
        }
        for name, spec in keys.items()
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": 1, "revision": revision, "keys": entries}))
    os.replace(tmp, path)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "api_keys.json"
    write_keys(path, {"alice": {"key": "alice-key-1"}})
    return path


@pytest.fixture
def keyed(settings: Settings, keys_file: Path) -> Settings:
    return settings.with_changes(api_keys=(DEFAULT_KEY,), api_keys_file=keys_file)


def post(client: Any, key: str | None, source: str = "x = 1\n") -> Any:
    headers = {"x-api-key": key} if key is not None else {}
    return client.post(ANALYZE, json=analyze_body(source), headers=headers)


# --- keys -----------------------------------------------------------------------------------


def test_a_named_key_and_the_default_key_are_accepted_and_others_refused(make_client, keyed):
    client = make_client(keyed)
    assert post(client, "alice-key-1").status_code == 200
    assert post(client, DEFAULT_KEY).status_code == 200  # today's clients need no change
    refused = post(client, "alice-key-2")
    assert refused.status_code == 401
    assert refused.get_json() == {"success": False, "error": "Invalid API key"}
    assert post(client, None).status_code == 401


def test_added_revoked_and_rotated_keys_take_effect_on_the_next_request(
    make_client, keyed, keys_file
):
    client = make_client(keyed)
    assert post(client, "bob-key").status_code == 401
    write_keys(keys_file, {"alice": {"key": "alice-key-1"}, "bob": {"key": "bob-key"}}, 2)
    assert post(client, "bob-key").status_code == 200
    write_keys(keys_file, {"alice": {"key": "alice-key-2"}}, 3)  # bob revoked, alice rotated
    assert post(client, "bob-key").status_code == 401
    assert post(client, "alice-key-1").status_code == 401
    assert post(client, "alice-key-2").status_code == 200


def test_a_corrupt_keys_file_keeps_the_last_good_set_and_is_logged_once(
    keys_file, caplog: pytest.LogCaptureFixture
):
    ring = KeyRing((DEFAULT_KEY,), keys_file)
    keys_file.write_text('{"format": 1, "keys": {')  # a half-written file
    with caplog.at_level(logging.ERROR, logger="iris_service.api_keys"):
        for _ in range(3):
            found = ring.lookup("alice-key-1")
            assert found is not None and found.name == "alice"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "is not valid JSON" in errors[0] and "keeping the last good set" in errors[0]
    assert ring.lookup("anything else") is None  # never open


def test_an_unreadable_keys_file_keeps_the_last_good_set(keys_file, tmp_path: Path):
    ring = KeyRing((), keys_file)
    keys_file.unlink()
    keys_file.mkdir()  # cannot be read as a file
    assert ring.lookup("alice-key-1") is not None
    with pytest.raises(KeysFileError, match="cannot read keys file"):
        load_keys_file(keys_file)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not valid JSON"),
        ('{"format": 2, "keys": {}}', "is not an IRIS keys file"),
        ('{"format": 1, "keys": {"a b": {"sha256": "' + "0" * 64 + '"}}}', "not a valid key name"),
        ('{"format": 1, "keys": {"default": {"sha256": "' + "0" * 64 + '"}}}', "not a valid"),
        ('{"format": 1, "keys": {"a": {"sha256": "xyz"}}}', "'sha256' must be 64"),
        (
            '{"format": 1, "keys": {"a": {"sha256": "' + "0" * 64 + '", "rate_per_minute": -1}}}',
            "rate_per_minute must be a number >= 0",
        ),
        (
            '{"format": 1, "keys": {"a": {"sha256": "' + "0" * 64 + '", "rate_per_minute": 1.5}}}',
            "rate_per_minute must be a number >= 0",
        ),
        (
            '{"format": 1, "keys": {"a": {"sha256": "' + "0" * 64 + '", "daily_budget_usd": "5"}}}',
            "daily_budget_usd must be a number",
        ),
    ],
)
def test_a_bad_keys_file_at_start_up_refuses_to_start(tmp_path: Path, content: str, message: str):
    path = tmp_path / "api_keys.json"
    path.write_text(content)
    problem = config_problem({"IRIS_API_KEYS_FILE": str(path), "IRIS_CACHE_DIR": str(tmp_path)})
    assert problem is not None and message in problem


def test_a_missing_keys_file_holds_no_keys_but_still_requires_one(make_client, settings, tmp_path):
    client = make_client(settings.with_changes(api_keys_file=tmp_path / "none.json"))
    assert post(client, None).status_code == 401  # configured keys never fall open


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IRIS_RATE_LIMIT_PER_MINUTE", "ten"),
        ("IRIS_RATE_LIMIT_PER_MINUTE", "-1"),
        ("IRIS_DAILY_BUDGET_USD", "5 dollars"),
        ("IRIS_RATE_LIMIT_STORAGE", "nosuch://x"),
    ],
)
def test_a_malformed_limit_budget_or_storage_refuses_to_start(tmp_path, name: str, value: str):
    problem = config_problem({name: value, "IRIS_CACHE_DIR": str(tmp_path)})
    assert problem is not None and name in problem


# --- rate limits ----------------------------------------------------------------------------


def test_over_its_rate_a_key_gets_429_with_retry_after(make_client, keyed, keys_file):
    write_keys(keys_file, {"alice": {"key": "alice-key-1", "rate_per_minute": 3}})
    client = make_client(keyed.with_changes(rate_limit_per_minute=100))
    assert [post(client, "alice-key-1").status_code for _ in range(3)] == [200, 200, 200]
    limited = post(client, "alice-key-1")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    body = limited.get_json()
    assert body["success"] is False and body["limit"] == "rate" and body["key"] == "alice"
    assert "3 requests per minute" in body["error"]
    assert post(client, DEFAULT_KEY).status_code == 200  # other keys have their own count


def test_the_default_rate_applies_to_keys_without_their_own(make_client, keyed):
    client = make_client(keyed.with_changes(rate_limit_per_minute=2))
    assert [post(client, DEFAULT_KEY).status_code for _ in range(3)] == [200, 200, 429]


def test_a_counter_starts_again_when_its_window_ends(tmp_path: Path):
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'limits.sqlite'}")
    assert [storage.incr("k", 1) for _ in range(3)] == [1, 2, 3]
    assert storage.get("k") == 3 and storage.get_expiry("k") > time.time()
    deadline = time.monotonic() + 5
    while storage.get("k") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert storage.get("k") == 0
    assert storage.incr("k", 60) == 1


def test_every_gunicorn_worker_shares_one_count(gunicorn_factory, tmp_path: Path):
    """2 workers, a limit of 10: 30 concurrent requests get exactly 10 answers between them."""
    keys_file = tmp_path / "api_keys.json"
    write_keys(keys_file, {"alice": {"key": "alice-key-1", "rate_per_minute": 10}})
    server = gunicorn_factory(IRIS_API_KEYS_FILE=str(keys_file), IRIS_WORKERS="2").start()
    body = analyze_body(sample_source("shared"))
    # The model is called once, before the burst: the burst itself is all cache hits.
    warm = server.post(body, headers={"x-api-key": DEFAULT_KEY})
    assert warm.status_code == 200

    def one(_: int) -> int:
        return server.post(body, headers={"x-api-key": "alice-key-1"}).status_code

    # Each worker accepts only as many connections as it has threads (8): 30 at once reach
    # both. Counted per worker, the two would let up to 20 through.
    with ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(one, range(30)))
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 20


# --- budgets --------------------------------------------------------------------------------


def test_a_spent_key_budget_refuses_model_calls_and_still_serves_cache_hits(
    make_client, keyed, keys_file
):
    write_keys(keys_file, {"alice": {"key": "alice-key-1", "daily_budget_usd": 0.0000001}})
    client = make_client(keyed)
    first = post(client, "alice-key-1", sample_source("one"))
    assert first.status_code == 200 and first.get_json()["metadata"]["estimated_cost_usd"] > 0
    refused = post(client, "alice-key-1", sample_source("two"))
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["limit"] == "budget" and body["budget"] == "key" and body["key"] == "alice"
    assert "daily model budget of key 'alice' is spent" in body["error"]
    assert body["resets_at"].endswith("T00:00:00+00:00")
    assert int(refused.headers["Retry-After"]) <= 86400
    again = post(client, "alice-key-1", sample_source("one"))  # cached: no model call
    assert again.status_code == 200 and again.get_json()["metadata"]["cache_hit"] == 1
    assert post(client, DEFAULT_KEY, sample_source("two")).status_code == 200  # its own budget


def test_a_spent_global_budget_refuses_every_key(make_client, keyed):
    client = make_client(keyed.with_changes(daily_budget_usd=0.0000001))
    assert post(client, "alice-key-1", sample_source("one")).status_code == 200
    refused = post(client, DEFAULT_KEY, sample_source("two"))
    assert refused.status_code == 429 and refused.get_json()["budget"] == "global"
    assert "daily model budget of global is spent" in refused.get_json()["error"]
    assert post(client, DEFAULT_KEY, sample_source("one")).status_code == 200


def test_the_host_report_counts_each_keys_use_and_spend(make_client, keyed, keys_file):
    write_keys(keys_file, {"alice": {"key": "alice-key-1", "daily_budget_usd": 5}})
    client = make_client(keyed.with_changes(daily_budget_usd=10.0))
    post(client, "alice-key-1", sample_source("one"))
    post(client, "alice-key-1", sample_source("one"))
    post(client, DEFAULT_KEY, sample_source("two"))
    client.application.extensions["iris"].auth.usage.flush()  # else within a second
    report = key_admin.key_report(keyed.with_changes(daily_budget_usd=10.0))
    alice, default = report["keys"]["alice"], report["keys"]["default"]
    assert (alice["requests"], alice["model_calls"]) == (2, 1)
    assert (default["requests"], default["model_calls"]) == (1, 1)
    assert alice["cost_usd"] > 0 and alice["spent_today_usd"] == pytest.approx(alice["cost_usd"])
    assert alice["daily_budget_usd"] == 5 and alice["last_used"]
    total = alice["cost_usd"] + default["cost_usd"]
    assert report["global"]["spent_today_usd"] == pytest.approx(total)
    assert report["global"]["daily_budget_usd"] == 10.0
    assert report["storage"] == "host"


def test_gunicorn_refuses_to_start_on_a_corrupt_keys_file(gunicorn_factory, tmp_path: Path):
    bad = tmp_path / "api_keys.json"
    bad.write_text("{")
    run = gunicorn_factory(IRIS_API_KEYS_FILE=str(bad)).run_expecting_exit()
    assert run.returncode == EXIT_BAD_CONFIG
    assert "refusing to start: keys file" in (tmp_path / "error.log").read_text()


def test_a_key_is_never_logged(gunicorn_factory, tmp_path: Path):
    keys_file = tmp_path / "api_keys.json"
    write_keys(keys_file, {"alice": {"key": "alice-secret-key"}})
    server = gunicorn_factory(IRIS_API_KEYS_FILE=str(keys_file)).start()
    assert server.post(analyze_body("x = 1\n"), headers={"x-api-key": "alice-secret-key"}).ok
    write_keys(keys_file, {"alice": {"key": "alice-secret-key-2"}}, 2)
    response = requests.post(
        server.url + ANALYZE,
        json=analyze_body("x = 1\n"),
        headers={"x-api-key": "alice-secret-key"},
        timeout=10,
    )
    assert response.status_code == 401
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert "alice-secret-key" not in logs


def test_cache_stats_show_the_days_spend_against_the_global_budget(make_client, keyed):
    budgeted = keyed.with_changes(daily_budget_usd=2.0)
    client = make_client(budgeted)
    spent = post(client, DEFAULT_KEY, sample_source("one")).get_json()["metadata"]
    budget = admin.cache_stats(budgeted)["budget"]
    assert budget["daily_budget_usd"] == 2.0
    assert budget["spent_today_usd"] == pytest.approx(spent["estimated_cost_usd"])
    assert budget["budget_resets_at"].endswith("T00:00:00+00:00")


def test_every_worker_writes_its_counts_within_a_second(gunicorn_factory, tmp_path: Path):
    keys_file = tmp_path / "api_keys.json"
    write_keys(keys_file, {"alice": {"key": "alice-key-1"}})
    server = gunicorn_factory(IRIS_API_KEYS_FILE=str(keys_file)).start()
    body = analyze_body(sample_source("counted"))
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(
            pool.map(
                lambda _: server.post(body, headers={"x-api-key": "alice-key-1"}).status_code,
                range(20),
            )
        )
    assert statuses == [200] * 20
    usage = KeyUsage(tmp_path / "iris" / "key_usage.sqlite")
    counted = wait_until(lambda: usage.read().get("alice", {}).get("requests") == 20, timeout=5)
    assert counted, usage.read()
    assert usage.read()["alice"]["model_calls"] == 1


def test_a_worker_writes_its_last_counts_when_it_stops(gunicorn_factory, tmp_path: Path):
    keys_file = tmp_path / "api_keys.json"
    write_keys(keys_file, {"alice": {"key": "alice-key-1"}})
    server = gunicorn_factory(IRIS_API_KEYS_FILE=str(keys_file)).start()
    assert server.post(analyze_body("x = 1\n"), headers={"x-api-key": "alice-key-1"}).ok
    server.stop()  # within the second: only the exit's flush can have written it
    assert KeyUsage(tmp_path / "iris" / "key_usage.sqlite").read()["alice"]["requests"] == 1


def test_reading_use_and_spend_creates_no_file(keyed):
    """The admin tool may run as another user than the service: files it made would be its."""
    key_admin.key_report(keyed)
    admin.cache_stats(keyed)
    assert not keyed.cache_dir.exists() or not any(keyed.cache_dir.iterdir())


def test_an_unusable_limit_storage_keeps_serving_but_never_risks_a_budget(
    make_client,
    keyed,
    keys_file,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    from iris_service import rate_limits

    # The warning is logged at most once a minute per process: an earlier test may have used it.
    monkeypatch.setattr(rate_limits, "_next_warning", float("-inf"))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the storage's directory should be")
    write_keys(keys_file, {"alice": {"key": "alice-key-1", "daily_budget_usd": 5}})
    broken = keyed.with_changes(
        rate_limit_per_minute=1, rate_limit_storage=f"sqlite:///{blocked / 'limits.sqlite'}"
    )
    client = make_client(broken)
    with caplog.at_level(logging.WARNING, logger="iris_service.rate_limits"):
        statuses = [post(client, DEFAULT_KEY).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]  # counts cannot be kept: not a reason to refuse
    assert any("rate limit storage failed" in r.getMessage() for r in caplog.records)
    assert post(client, "iris_wrong").status_code == 401  # keys are still checked
    refused = post(client, "alice-key-1", sample_source("needs-the-model"))
    assert refused.status_code == 503
    assert refused.get_json()["error"] == "Model budget cannot be checked now; retry later"


def test_any_limits_storage_uri_plugs_in(tmp_path: Path):
    """The seam a shared store (redis://) uses: the library's own storages by their URI."""
    from iris_service.budgets import Budgets
    from iris_service.errors import TooManyRequests
    from iris_service.rate_limits import RateLimiter, open_storage
    from limits.storage import MemoryStorage

    storage = open_storage("memory://")
    assert isinstance(storage, MemoryStorage)
    limiter = RateLimiter(storage)
    limiter.hit("alice", 1)
    with pytest.raises(TooManyRequests):
        limiter.hit("alice", 1)
    budgets = Budgets(storage, 0.0)
    budgets.record("alice", 0.25)
    assert budgets.spent_usd("alice") == 0.25
    with pytest.raises(TooManyRequests):
        budgets.check("alice", 0.25)
