"""irisctl keys: the commands and ops.keys against hosts played by a fake ``keys.yml``.

The play itself, the service reading the file and the limits through nginx are tested on a real
sandbox host (tests/hosts/test_keys_through_nginx.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from irisctl.ops.target import Target


class FakeHosts:
    """What keys.yml does on each host: report the file and each key's use; write the file."""

    def __init__(self, names: tuple[str, ...] = ("iris-1",)) -> None:
        self.files: dict[str, str | None] = dict.fromkeys(names)
        self.usage: dict[str, dict[str, Any]] = {
            name: {"keys": {}, "global": {}, "storage": "host"} for name in names
        }
        self.calls: list[dict[str, Any]] = []

    def reports(self, target: Target, playbook: str, **kwargs: Any) -> dict[str, Any]:
        assert playbook == "keys"
        extravars = kwargs["extravars"]
        self.calls.append(extravars)
        if extravars["iris_keys_action"] == "write":
            for host in self.files:
                self.files[host] = extravars["iris_keys_content"]
        return {
            host: {
                "file": content or "",
                "file_error": "" if content is not None else f"file not found: {host}",
                "usage": self.usage[host],
            }
            for host, content in self.files.items()
        }

    def keys(self, host: str = "iris-1") -> dict[str, Any]:
        return json.loads(self.files[host] or "{}")


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> FakeHosts:
    fake = FakeHosts()
    monkeypatch.setattr(Target, "reports", lambda self, pb, **kw: fake.reports(self, pb, **kw))
    return fake


@pytest.fixture
def keys(invoke, local_inventory: Path):  # type: ignore[no-untyped-def]
    def run(*args: str):  # type: ignore[no-untyped-def]
        return invoke("-i", str(local_inventory), "keys", *args)

    return run


@pytest.mark.parametrize("command", ["list", "add", "revoke", "rotate"])
def test_every_keys_command_has_examples_exit_codes_and_json(invoke, command: str) -> None:
    result = invoke("keys", command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and "Exit codes:" in result.output
    assert "--json" in result.output


def test_add_prints_the_key_once_and_sends_only_its_hash(keys, hosts: FakeHosts) -> None:
    result = keys("add", "alice", "--rate-per-minute", "60", "--daily-budget-usd", "2.5", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"name", "key"} and data["name"] == "alice"
    assert data["key"].startswith("iris_") and len(data["key"]) >= 40
    written = hosts.keys()
    assert written["format"] == 1 and written["revision"] == 1
    entry = written["keys"]["alice"]
    assert entry["sha256"] == hashlib.sha256(data["key"].encode()).hexdigest()
    assert entry["rate_per_minute"] == 60 and entry["daily_budget_usd"] == 2.5
    assert data["key"] not in json.dumps(hosts.calls)  # never leaves this process
    assert data["key"] not in result.stderr


def test_add_without_json_shows_the_key_and_says_it_is_shown_once(keys, hosts) -> None:
    result = keys("add", "alice")
    assert result.exit_code == 0
    assert "key alice: iris_" in result.stdout
    assert "Shown once" in result.stderr


def test_two_keys_get_different_keys_and_increasing_revisions(keys, hosts: FakeHosts) -> None:
    first = json.loads(keys("add", "alice", "--json").stdout)["key"]
    second = json.loads(keys("add", "bob", "--json").stdout)["key"]
    assert first != second
    assert hosts.keys()["revision"] == 2 and set(hosts.keys()["keys"]) == {"alice", "bob"}
    assert hosts.calls[-1]["iris_keys_expected_revision"] == 1


def test_rotate_replaces_the_hash_and_keeps_the_limits(keys, hosts: FakeHosts) -> None:
    old = json.loads(keys("add", "alice", "--rate-per-minute", "5", "--json").stdout)["key"]
    result = keys("rotate", "alice", "--json")
    assert result.exit_code == 0
    new = json.loads(result.stdout)["key"]
    entry = hosts.keys()["keys"]["alice"]
    assert new != old and entry["sha256"] == hashlib.sha256(new.encode()).hexdigest()
    assert entry["rate_per_minute"] == 5 and entry["rotated"]


def test_revoke_removes_the_key_from_every_host(keys, monkeypatch) -> None:
    fake = FakeHosts(("iris-1", "iris-2"))
    monkeypatch.setattr(Target, "reports", lambda self, pb, **kw: fake.reports(self, pb, **kw))
    keys("add", "alice")
    keys("add", "bob")
    result = keys("revoke", "alice", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"name": "alice", "revoked": True}
    assert fake.files["iris-1"] == fake.files["iris-2"]
    assert set(fake.keys("iris-2")["keys"]) == {"bob"}


def test_the_newest_file_any_host_holds_is_the_one_changed(keys, monkeypatch) -> None:
    fake = FakeHosts(("iris-1", "iris-2"))
    monkeypatch.setattr(Target, "reports", lambda self, pb, **kw: fake.reports(self, pb, **kw))
    keys("add", "alice")
    fake.files["iris-2"] = None  # a host that missed the change (new, or was down)
    keys("add", "bob")
    assert set(fake.keys("iris-2")["keys"]) == {"alice", "bob"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "bad name"], "'bad name' is not a valid key name"),
        (["add", "default"], "the key named 'default' is IRIS_API_KEY"),
        (["revoke", "default"], "the key named 'default' is IRIS_API_KEY"),
        (["add", "a", "--rate-per-minute", "fast"], "must be a whole number"),
        (["add", "a", "--rate-per-minute", "-3"], "must be >= 0"),
        (["add", "a", "--daily-budget-usd", "lots"], "must be an amount in USD"),
        (["add", "a", "--daily-budget-usd", "0"], "must be a positive amount"),
        (["add", "a", "--daily-budget-usd", "inf"], "must be a positive amount"),
    ],
)
def test_a_malformed_name_limit_or_budget_is_exit_2_before_any_play(
    keys, hosts: FakeHosts, args: list[str], message: str
) -> None:
    result = keys(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert hosts.calls == []


def test_a_duplicate_or_unknown_name_is_one_line_and_exit_2(keys, hosts: FakeHosts) -> None:
    keys("add", "alice")
    duplicate = keys("add", "alice")
    assert duplicate.exit_code == 2
    assert duplicate.stderr.strip() == (
        "error: a key named 'alice' exists already (rotate or revoke it)"
    )
    for command in ("revoke", "rotate"):
        unknown = keys(command, "carol")
        assert unknown.exit_code == 2
        assert unknown.stderr.strip() == "error: no key named 'carol' (keys: alice)"
    assert len([c for c in hosts.calls if c["iris_keys_action"] == "write"]) == 1


def test_a_corrupt_keys_file_on_a_host_is_named_and_nothing_is_written(keys, hosts) -> None:
    hosts.files["iris-1"] = '{"format": 1, "keys": {'
    result = keys("add", "alice", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"].startswith(
        "the keys file on iris-1 is not valid JSON"
    )
    assert hosts.files["iris-1"] == '{"format": 1, "keys": {'


def _usage(requests: int, calls: int, cost: float, spent: float, last: str) -> dict[str, Any]:
    return {
        "requests": requests,
        "model_calls": calls,
        "cost_usd": cost,
        "last_used": last,
        "spent_today_usd": spent,
        "daily_budget_usd": None,
        "budget_resets_at": "2026-01-02T00:00:00+00:00",
    }


def test_list_adds_the_hosts_up_and_shows_spend_against_budget(keys, monkeypatch) -> None:
    fake = FakeHosts(("iris-1", "iris-2"))
    monkeypatch.setattr(Target, "reports", lambda self, pb, **kw: fake.reports(self, pb, **kw))
    keys("add", "alice", "--daily-budget-usd", "1")
    fake.usage["iris-1"] = {
        "keys": {
            "alice": _usage(3, 2, 0.25, 0.25, "2026-01-01T10:00:00+00:00"),
            "default": _usage(1, 1, 0.5, 0.5, "2026-01-01T09:00:00+00:00"),
        },
        "global": {
            "spent_today_usd": 0.75,
            "daily_budget_usd": 10.0,
            "budget_resets_at": "2026-01-02T00:00:00+00:00",
        },
        "default_rate_per_minute": 120,
        "storage": "host",
    }
    fake.usage["iris-2"] = {
        "keys": {"alice": _usage(4, 1, 0.5, 0.5, "2026-01-01T11:00:00+00:00")},
        "global": {
            "spent_today_usd": 0.5,
            "daily_budget_usd": 10.0,
            "budget_resets_at": "2026-01-02T00:00:00+00:00",
        },
        "default_rate_per_minute": 120,
        "storage": "host",
    }
    result = keys("list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    default, alice = data["keys"]
    assert default["name"] == "default" and default["requests"] == 1
    assert alice["name"] == "alice"
    assert (alice["requests"], alice["model_calls"]) == (7, 3)
    assert alice["cost_usd"] == 0.75 and alice["spent_today_usd"] == 0.75
    assert alice["daily_budget_usd"] == 1.0 and alice["created"]
    assert alice["last_used"] == "2026-01-01T11:00:00+00:00"
    assert data["global"]["spent_today_usd"] == 1.25 and data["global"]["daily_budget_usd"] == 10
    table = keys("list")
    assert table.exit_code == 0
    assert "$0.750000 of $1.00" in table.stdout and "120" in table.stdout
    assert "$1.250000 of $10.00" in table.stdout


def test_list_with_one_shared_store_counts_the_spend_once(keys, monkeypatch) -> None:
    fake = FakeHosts(("iris-1", "iris-2"))
    monkeypatch.setattr(Target, "reports", lambda self, pb, **kw: fake.reports(self, pb, **kw))
    keys("add", "alice")
    for host in fake.usage:
        fake.usage[host] = {
            "keys": {"alice": _usage(1, 1, 0.25, 0.5, "2026-01-01T10:00:00+00:00")},
            "global": {"spent_today_usd": 0.5},
            "storage": "shared",
        }
    data = json.loads(keys("list", "--json").stdout)
    assert data["keys"][0]["cost_usd"] == 0.5  # each host's own calls add up
    assert data["keys"][0]["spent_today_usd"] == 0.5  # one shared day's spend
    assert data["global"]["spent_today_usd"] == 0.5


def test_cache_stats_show_the_days_spend_against_the_budget(
    invoke, local_inventory: Path, monkeypatch
) -> None:
    stats = {
        "entries": 1,
        "budget": {"spent_today_usd": 0.5, "daily_budget_usd": 10.0, "budget_resets_at": "x"},
    }
    monkeypatch.setattr(
        Target, "reports", lambda self, playbook, **kw: {"local-1": {"rc": 0, "result": stats}}
    )
    result = invoke("-i", str(local_inventory), "cache", "stats")
    assert result.exit_code == 0
    assert "model spend today" in result.stdout and "$0.500000 of $10.00" in result.stdout
