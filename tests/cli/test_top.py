"""irisctl top: the numbers from one host report (playbooks/top.yml), the fleet's, and the
command's --once --json and live modes (the play stood in for)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from irisctl.commands import top as top_command
from irisctl.ops import top as top_ops
from irisctl.ops.cache import cache_stats

# What `iris-service-admin cache stats` prints (service/iris_service/admin.py), trimmed.
ADMIN_STATS = {
    "entries": 3,
    "hits": 6,
    "misses": 2,
    "hit_rate": 0.75,
    "model_calls": 2,
    "cost_spent_usd": 0.0012,
    "since": "2026-11-26T10:00:00+00:00",
    "budget": {"spent_today_usd": 0.5, "daily_budget_usd": 2.0, "budget_resets_at": "x"},
}
NOW = 1_800_000_000
CERT = "notAfter=Feb 14 12:00:00 2027 GMT"


def raw_report(**changes: Any) -> dict[str, Any]:
    access = [f"/api/iris/analyze {200} {ms}ms" for ms in range(10, 110, 10)]  # 10..100 ms
    access += ["/api/iris/health 200 1ms", "/api/iris/analyze 400 3ms", "garbage line"]
    report = {
        "probe": {
            "units": "Id=iris-backend.service\nLoadState=loaded\nActiveState=active\n",
            "current": "/opt/iris/releases/1.4.0",
            "cert": CERT,
            "disk": "avail size\n250 1000\n",
            "now": NOW,
        },
        "cache": json.dumps(ADMIN_STATS),
        "in_flight": "4\n",
        "access": "\n".join(access),
        "window_seconds": "60",
    }
    return {**report, **changes}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert top_ops.percentile(values, 50) == 50.0
    assert top_ops.percentile(values, 99) == 99.0
    assert top_ops.percentile([7.0], 99) == 7.0
    assert top_ops.percentile([], 50) is None


def test_a_host_row_from_its_report() -> None:
    row = top_ops.build_host("iris-1", raw_report())
    assert row["release"] == "1.4.0" and row["service"] == "active"
    assert row["requests_per_second"] == round(12 / 60, 2)  # the garbage line is not a request
    assert row["in_flight"] == 4
    assert row["cache"]["hit_rate"] == 0.75 and row["cache"]["model_calls"] == 2
    # latency of analyses only (3, 10, ..., 100 ms), the 400 included (it was answered), not health
    assert row["latency_ms"] == {"p50": 50.0, "p99": 100.0, "samples": 11}
    assert row["model"] == {
        "calls": 2,
        "spent_today_usd": 0.5,
        "daily_budget_usd": 2.0,
        "budget_used_percent": 25.0,
    }
    assert row["certificate_days_left"] == (1_802_606_400 - NOW) // 86400
    assert row["disk_used_percent"] == 75.0


def test_an_unreadable_host_report_is_dashes_not_a_crash() -> None:
    row = top_ops.build_host("iris-1", {"probe": {}, "cache": "not json", "access": ""})
    assert row["requests_per_second"] == 0 and row["in_flight"] is None
    assert row["latency_ms"]["p50"] is None and row["model"]["budget_used_percent"] is None
    assert row["certificate_days_left"] is None and row["disk_used_percent"] is None


def test_the_fleet_adds_traffic_and_takes_the_worst_certificate_and_disk() -> None:
    one = top_ops.build_host("iris-1", raw_report())
    other_stats = {**ADMIN_STATS, "hits": 0, "misses": 2, "model_calls": 2}
    two = top_ops.build_host(
        "iris-2",
        raw_report(
            cache=json.dumps(other_stats),
            access="/api/iris/analyze 200 1000ms",
        ),
    )
    two["certificate_days_left"], two["disk_used_percent"] = 3, 90.0
    fleet = top_ops.fleet([one, two])
    assert fleet["hosts"] == 2 and fleet["in_flight"] == 8
    assert fleet["cache"]["hits"] == 6 and fleet["cache"]["misses"] == 4
    assert fleet["cache"]["hit_rate"] == 0.6  # over all lookups (the mean of rates: 0.375)
    assert fleet["latency_ms"]["samples"] == 12 and fleet["latency_ms"]["p99"] == 1000.0
    assert fleet["model"]["calls"] == 4 and fleet["model"]["budget_used_percent"] == 25.0
    assert fleet["certificate_days_left"] == 3 and fleet["disk_used_percent"] == 90.0


class StandIn:
    """A target whose plays answer from canned reports: top.yml and cache.yml."""

    def __init__(self, reports: dict[str, dict[str, Any]]) -> None:
        self.top = reports
        self.calls = 0

    def reports(self, playbook: str, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if playbook == "cache":
            return {host: {"rc": 0, "result": ADMIN_STATS} for host in self.top}
        assert playbook == "top"
        return self.top


def test_top_and_cache_stats_agree_from_the_same_admin_output() -> None:
    target = StandIn({"iris-1": raw_report()})
    data = top_ops.snapshot(target)  # type: ignore[arg-type]
    (stats,) = cache_stats(target)["hosts"]  # type: ignore[arg-type]
    (host,) = data["hosts"]
    for name in ("hits", "misses", "hit_rate", "model_calls", "cost_spent_usd"):
        assert host["cache"][name] == stats[name], name
    assert host["model"]["spent_today_usd"] == stats["budget"]["spent_today_usd"]
    assert "_latencies" not in host


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    target = StandIn({"iris-1": raw_report()})
    monkeypatch.setattr(top_command.Options, "target", lambda self, **kw: target)
    return target


def test_once_json_prints_one_snapshot(invoke, stand_in: StandIn) -> None:
    result = invoke("top", "--once", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"at", "hosts", "fleet"} and data["hosts"][0]["host"] == "iris-1"
    assert stand_in.calls == 1


def test_once_prints_a_table_with_the_fleet(invoke, stand_in: StandIn) -> None:
    result = invoke("top", "--once")
    assert result.exit_code == 0, result.output
    assert "iris-1" in result.stdout and "fleet (1)" in result.stdout
    assert "75.0%" in result.stdout and "$0.5000 / $2.00 (25.0%)" in result.stdout


@pytest.mark.parametrize("mode", [(), ("--json",)], ids=["live", "json-lines"])
def test_ctrl_c_ends_the_live_view_with_130(
    invoke, stand_in: StandIn, monkeypatch: pytest.MonkeyPatch, mode: tuple[str, ...]
) -> None:
    def sleep(seconds: float) -> None:
        assert 0 <= seconds <= 1.0
        if stand_in.calls >= 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(top_command.time, "sleep", sleep)
    result = invoke("top", "--interval", "1", *mode)
    assert result.exit_code == 130, result.output
    assert stand_in.calls == 3
    if mode:
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(lines) == 3 and all(line["fleet"]["hosts"] == 1 for line in lines)


def test_an_interval_below_a_second_is_a_usage_error(invoke) -> None:
    result = invoke("top", "--interval", "0.1")
    assert result.exit_code == 2
    assert "--interval" in result.output
