"""``irisctl top``: one snapshot of each host and the fleet, from ``playbooks/top.yml``.

The cache counters and today's model spend are the admin tool's ``cache stats`` (what
``irisctl cache stats`` prints); requests per second and latency come from the access log's
last minute; requests in flight are the connections the service is answering (nginx keeps no
idle pool to it, so each one is a request). The pure functions below are unit-tested.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from irisctl.ops.reports import build_status
from irisctl.ops.target import Target

ANALYZE_PATH = "/api/iris/analyze"
_ACCESS_RE = re.compile(r"^(?P<path>\S+) (?P<status>\d{3}) (?P<ms>\d+)ms$")


def snapshot(target: Target) -> dict[str, Any]:
    """Every host's numbers and the fleet's, read once."""
    raw = target.reports("top")
    hosts = [build_host(host, report) for host, report in sorted(raw.items())]
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hosts": [_public(h) for h in hosts],
        "fleet": fleet(hosts),
    }


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0-100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def parse_access(text: str) -> dict[str, Any]:
    """``<path> <status> <ms>ms`` lines -> request count and the analyses' latencies."""
    requests, latencies = 0, []
    for line in text.splitlines():
        match = _ACCESS_RE.match(line.strip())
        if not match:
            continue
        requests += 1
        if match["path"].split("?")[0] == ANALYZE_PATH:
            latencies.append(float(match["ms"]))
    return {"requests": requests, "analysis_latencies_ms": latencies}


def _json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if text and text.strip() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _int(text: Any) -> int | None:
    value = str(text).strip()
    return int(value) if value.isdigit() else None


def _latency(latencies: list[float]) -> dict[str, Any]:
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "samples": len(latencies),
    }


def build_host(host: str, raw: dict[str, Any]) -> dict[str, Any]:
    """One host's row (with its raw latencies under ``_latencies`` for the fleet's)."""
    status = build_status(host, raw.get("probe") or {})
    cache = _json(raw.get("cache") or "")
    budget = cache.get("budget") or {}
    window = _int(raw.get("window_seconds")) or 60
    access = parse_access(raw.get("access") or "")
    disk = status["disk"]
    spent, limit = budget.get("spent_today_usd"), budget.get("daily_budget_usd")
    return {
        "host": host,
        "service": status["service"]["state"],
        "release": status["version"],
        "requests_per_second": round(access["requests"] / window, 2),
        "in_flight": _int(raw.get("in_flight")),
        "cache": {
            name: cache.get(name)
            for name in ("hits", "misses", "hit_rate", "model_calls", "cost_spent_usd", "since")
        },
        "latency_ms": _latency(access["analysis_latencies_ms"]),
        "model": {
            "calls": cache.get("model_calls"),
            "spent_today_usd": spent,
            "daily_budget_usd": limit or None,
            "budget_used_percent": _used_percent(spent, limit),
        },
        "certificate_days_left": (status["certificate"] or {}).get("days_left"),
        "disk_used_percent": round(100 - disk["free_percent"], 1)
        if disk and disk["free_percent"] is not None
        else None,
        "window_seconds": window,
        "_latencies": access["analysis_latencies_ms"],
    }


def _used_percent(spent: Any, limit: Any) -> float | None:
    return round(100 * spent / limit, 1) if spent is not None and limit else None


def _public(host: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in host.items() if not k.startswith("_")}


def _sum(values: list[Any]) -> Any:
    known = [v for v in values if isinstance(v, int | float)]
    return round(sum(known), 8) if known else None


def fleet(hosts: list[dict[str, Any]]) -> dict[str, Any]:
    """The fleet: sums of traffic, hit rate over all lookups, latency over all analyses, the
    soonest certificate expiry and the fullest disk."""
    hits = _sum([h["cache"]["hits"] for h in hosts])
    misses = _sum([h["cache"]["misses"] for h in hosts])
    lookups = (hits or 0) + (misses or 0)
    latencies = [ms for h in hosts for ms in h.get("_latencies", [])]
    spent = _sum([h["model"]["spent_today_usd"] for h in hosts])
    limit = _sum([h["model"]["daily_budget_usd"] for h in hosts])
    days = [h["certificate_days_left"] for h in hosts if h["certificate_days_left"] is not None]
    disks = [h["disk_used_percent"] for h in hosts if h["disk_used_percent"] is not None]
    return {
        "hosts": len(hosts),
        "requests_per_second": round(sum(h["requests_per_second"] for h in hosts), 2),
        "in_flight": _sum([h["in_flight"] for h in hosts]),
        "cache": {
            "hits": hits,
            "misses": misses,
            "hit_rate": round((hits or 0) / lookups, 4) if lookups else 0.0,
            "model_calls": _sum([h["cache"]["model_calls"] for h in hosts]),
            "cost_spent_usd": _sum([h["cache"]["cost_spent_usd"] for h in hosts]),
        },
        "latency_ms": _latency(latencies),
        "model": {
            "calls": _sum([h["model"]["calls"] for h in hosts]),
            "spent_today_usd": spent,
            "daily_budget_usd": limit or None,
            "budget_used_percent": _used_percent(spent, limit),
        },
        "releases": sorted({h["release"] for h in hosts if h["release"]}),
        "certificate_days_left": min(days) if days else None,
        "disk_used_percent": max(disks) if disks else None,
    }
