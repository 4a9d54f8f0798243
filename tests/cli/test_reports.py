"""Parsing the raw playbook reports into the shapes irisctl prints."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from irisctl import humanize
from irisctl.ops import reports

NOW = 1_800_000_000

UNITS = """Id=iris-backend.service
LoadState=loaded
ActiveState=active
SubState=running
ActiveEnterTimestamp=@1799996400

Id=nginx.service
LoadState=not-found
ActiveState=inactive
SubState=dead
ActiveEnterTimestamp=
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800)],
)
def test_parse_duration_accepts_units(text: str, seconds: int) -> None:
    assert humanize.parse_duration(text) == seconds


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        humanize.parse_duration("soon")


def test_parse_since_takes_age_or_iso_time() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert humanize.parse_since("30m", now) == datetime(2026, 1, 1, 11, 30, tzinfo=UTC)
    assert humanize.parse_since("2026-01-01T10:00:00", now).tzinfo is UTC


def test_unit_state_reports_uptime_of_active_unit_and_missing_unit() -> None:
    units = reports.parse_units(UNITS)
    service = reports.unit_state(units["iris-backend.service"], NOW)
    assert service["state"] == "active" and service["uptime_seconds"] == 3600
    assert reports.unit_state(units["nginx.service"], NOW)["state"] == "missing"


def test_parse_cert_counts_whole_days_left() -> None:
    cert = reports.parse_cert("notAfter=Jan 15 08:00:00 2028 GMT", NOW)
    assert cert is not None
    expected = int((datetime(2028, 1, 15, 8, tzinfo=UTC).timestamp() - NOW) // 86400)
    assert cert["days_left"] == expected
    assert reports.parse_cert("", NOW) is None


def test_build_status_shape() -> None:
    raw = {
        "units": UNITS,
        "current": "/opt/iris/releases/1.2.0",
        "cert": "notAfter=Jan 15 08:00:00 2028 GMT",
        "disk": "      Avail       Size\n 1000 4000\n",
        "cache": "8192\n3\n",
        "now": NOW,
    }
    status = reports.build_status("h1", raw)
    assert set(status) == {"host", "service", "version", "nginx", "certificate", "disk", "cache"}
    assert status["version"] == "1.2.0"
    assert status["disk"] == {
        "path": "/var/iris",
        "free_bytes": 1000,
        "total_bytes": 4000,
        "free_percent": 25.0,
    }
    assert status["cache"] == {"bytes": 8192, "entries": 3}


def test_build_releases_newest_first_with_current_marked() -> None:
    raw = {
        "releases": [["/opt/iris/releases/1.0.0", NOW - 7200], ["/opt/iris/releases/1.1.0", NOW]],
        "current": "/opt/iris/releases/1.0.0",
        "now": NOW,
    }
    data = reports.build_releases("h1", raw)
    assert [r["version"] for r in data["releases"]] == ["1.1.0", "1.0.0"]
    assert [r["current"] for r in data["releases"]] == [False, True]
    assert data["releases"][1]["age_seconds"] == 7200


def test_health_checks_flag_each_failure() -> None:
    raw = {
        "units": UNITS,
        "current": "/opt/iris/releases/1.2.0",
        "cert": "notAfter=Jan 15 08:00:00 2028 GMT",
        "disk": "Avail Size\n10 1000\n",
        "cache": "",
        "now": NOW,
        "local_status": 503,
        "local_body": {"status": "unavailable", "errors": ["model client not configured"]},
        "cache_writable": True,
    }
    checks = {c["name"]: c for c in reports.health_checks(raw)}
    assert (
        checks["service"]["ok"] and checks["certificate"]["ok"] and checks["cache_writable"]["ok"]
    )
    assert not checks["nginx"]["ok"]
    assert not checks["local_endpoint"]["ok"]
    assert "model client not configured" in checks["local_endpoint"]["detail"]
    assert not checks["disk"]["ok"]  # 1% free
