"""Turn the raw ``iris_report`` of the read-only playbooks into the shapes irisctl prints.

Pure functions over strings and dicts: everything here is unit-tested without a host.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d``, ``1w`` -> seconds; ValueError otherwise."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 2h, 7d")
    return int(float(match[1]) * _UNIT_SECONDS[match[2].lower()])


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration ago (``15m``) or an ISO 8601 time (UTC when no zone is given)."""
    now = now or datetime.now(UTC)
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (15m, 2h) nor an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def human_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds % size
            sub = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            return f"{seconds // size}{unit}" + (f" {rest // sub[1]}{sub[0]}" if rest else "")
    return f"{seconds}s"


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def parse_units(text: str) -> dict[str, dict[str, Any]]:
    """``systemctl show A B --property=...`` output -> {unit id: properties}."""
    units: dict[str, dict[str, Any]] = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            units[props["Id"]] = props
    return units


def unit_state(props: dict[str, Any] | None, now: int) -> dict[str, Any]:
    """The state of one unit; uptime only while it is active."""
    if not props or props.get("LoadState") == "not-found":
        return {"state": "missing", "sub_state": None, "since": None, "uptime_seconds": None}
    state = props.get("ActiveState", "unknown")
    entered = props.get("ActiveEnterTimestamp", "").lstrip("@")
    since = int(entered) if entered.isdigit() and int(entered) > 0 else None
    uptime = now - since if since is not None and state == "active" else None
    return {
        "state": state,
        "sub_state": props.get("SubState"),
        "since": _iso(since),
        "uptime_seconds": uptime,
    }


def parse_cert(enddate: str, now: int) -> dict[str, Any] | None:
    """``notAfter=Mar  1 12:00:00 2026 GMT`` -> expiry and whole days left."""
    match = re.search(r"notAfter=(.+)", enddate)
    if not match:
        return None
    expiry = datetime.strptime(match[1].strip(), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    return {"not_after": expiry.isoformat(), "days_left": int((expiry.timestamp() - now) // 86400)}


def parse_disk(df_output: str) -> dict[str, Any] | None:
    """``df --output=avail,size`` -> free and total bytes."""
    lines = df_output.strip().splitlines()
    if len(lines) < 2:
        return None
    avail, size = (int(x) for x in lines[1].split()[:2])
    return {
        "path": "/var/iris",
        "free_bytes": avail,
        "total_bytes": size,
        "free_percent": round(100 * avail / size, 1) if size else None,
    }


def parse_cache_size(text: str) -> dict[str, Any] | None:
    lines = text.split()
    if len(lines) < 2 or not all(x.isdigit() for x in lines[:2]):
        return None
    return {"bytes": int(lines[0]), "entries": int(lines[1])}


def release_version(link_target: str) -> str | None:
    return PurePosixPath(link_target).name if link_target else None


def build_status(host: str, raw: dict[str, Any]) -> dict[str, Any]:
    """One host's status, from the probe in ``playbooks/tasks/iris_probe.yml``."""
    now = int(raw.get("now") or 0)
    units = parse_units(raw.get("units") or "")
    return {
        "host": host,
        "service": unit_state(units.get("iris-backend.service"), now),
        "version": release_version(raw.get("current") or ""),
        "nginx": unit_state(units.get("nginx.service"), now),
        "certificate": parse_cert(raw.get("cert") or "", now),
        "disk": parse_disk(raw.get("disk") or ""),
        "cache": parse_cache_size(raw.get("cache") or ""),
    }


def build_releases(host: str, raw: dict[str, Any]) -> dict[str, Any]:
    """One host's releases, newest first, with age and the current one marked."""
    now = int(raw.get("now") or 0)
    current = release_version(raw.get("current") or "")
    releases = []
    for path, mtime in raw.get("releases") or []:
        version = PurePosixPath(path).name
        releases.append(
            {
                "version": version,
                "path": path,
                "installed": _iso(float(mtime)),
                "age_seconds": max(0, now - int(float(mtime))),
                "current": version == current,
            }
        )
    releases.sort(key=lambda r: r["installed"] or "", reverse=True)
    return {"host": host, "current": current, "releases": releases}


def parse_log_record(text: str) -> dict[str, Any] | None:
    """One JSON line of ``playbooks/files/iris_logs.py`` -> {source, time, line}, or None
    for anything else on its output (a terminal's stray text, an empty line)."""
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("line"), str):
        return None
    return {"source": str(raw.get("source") or "-"), "time": raw.get("time"), "line": raw["line"]}


def parse_log_records(output: str) -> list[dict[str, Any]]:
    """Every record in the reader's output, in the order written."""
    return [r for r in map(parse_log_record, output.splitlines()) if r is not None]


def merge_log_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of several hosts in time order (ISO 8601 UTC times sort as text); a record
    without a time keeps the time of the one before it on its host."""
    keyed = []
    last: dict[str, str] = {}
    for index, record in enumerate(records):
        moment = record.get("time") or last.get(record["host"], "")
        last[record["host"]] = moment
        keyed.append((moment, index, record))
    return [record for _moment, _index, record in sorted(keyed, key=lambda k: k[:2])]


def health_checks(
    raw: dict[str, Any], min_cert_days: int = 14, min_free_percent: float = 5.0
) -> list[dict[str, Any]]:
    """The deep checks of one host from health.yml's report: name, ok, detail."""
    status = build_status("", raw)
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    service, nginx = status["service"], status["nginx"]
    check("service", service["state"] == "active", f"iris-backend {service['state']}")
    check("nginx", nginx["state"] == "active", f"nginx {nginx['state']}")
    local_status = raw.get("local_status", -1)
    body = raw.get("local_body")
    body_status = body.get("status") if isinstance(body, dict) else None
    local_ok = local_status == 200
    detail = (
        f"HTTP {local_status}" if local_status != -1 else (raw.get("local_error") or "no answer")
    )
    if isinstance(body, dict):
        detail += f", status {body_status}" if body_status else ""
        problems = body.get("problems") or body.get("errors") or body.get("checks")
        if not local_ok and problems:
            detail += f": {problems}"
    check("local_endpoint", local_ok, detail)
    cert = status["certificate"]
    if cert is None:
        error = (raw.get("cert_error") or "no certificate").strip().splitlines()
        check("certificate", False, error[-1] if error else "no certificate")
    else:
        check(
            "certificate",
            cert["days_left"] >= min_cert_days,
            f"{cert['days_left']} days left (expires {cert['not_after']})",
        )
    disk = status["disk"]
    if disk is None:
        check("disk", False, "/var/iris missing")
    else:
        check(
            "disk",
            (disk["free_percent"] or 0) >= min_free_percent,
            f"{human_bytes(disk['free_bytes'])} free ({disk['free_percent']}%)",
        )
    writable = bool(raw.get("cache_writable"))
    check("cache_writable", writable, "writable by iris" if writable else "not writable by iris")
    return checks
