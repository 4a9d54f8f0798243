"""What each host reports: ``irisctl status``, ``releases`` and ``health``.

The plays print a raw ``iris_report`` (the probe in ``playbooks/tasks/iris_probe.yml``); the
pure functions below turn it into the shapes irisctl prints, unit-tested without a host.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from irisctl.humanize import human_bytes
from irisctl.ops.fleet import balancer, version_drift
from irisctl.ops.target import Target
from irisctl.public import check_public_endpoint


def status(target: Target) -> dict[str, Any]:
    raw = target.reports("status")
    hosts = [build_status(host, report) for host, report in raw.items()]
    return {"hosts": hosts, **version_drift({h["host"]: h["version"] for h in hosts})}


def releases(target: Target) -> dict[str, Any]:
    raw = target.reports("releases")
    hosts = [build_releases(host, report) for host, report in raw.items()]
    return {"hosts": hosts, **version_drift({h["host"]: h["current"] for h in hosts})}


def health(target: Target, *, public: bool = True, min_cert_days: int = 14) -> dict[str, Any]:
    """Deep checks on each host plus the public HTTPS endpoint from here; never raises on
    an unhealthy host (the caller decides the exit code from ``healthy``)."""
    hosts: list[dict[str, Any]] = []
    for host, report in target.reports("health").items():
        checks = health_checks(report, min_cert_days=min_cert_days)
        if public:
            checks.append(
                check_public_endpoint(
                    report.get("domain") or "",
                    report.get("address") or host,
                    ca_bundle=target.ca_bundle,
                )
            )
        body = report.get("local_body")
        hosts.append(
            {
                "host": host,
                "healthy": all(c["ok"] for c in checks),
                "version": release_version(report.get("current") or ""),
                "serving_version": body.get("version") if isinstance(body, dict) else None,
                "checks": checks,
            }
        )
    fleet = version_drift({h["host"]: h["version"] for h in hosts})
    front = balancer(target.inventory) if public else None
    entry = None
    if front is not None:
        # what clients reach: the balancer's own name, through it to whichever host is up
        entry = {
            "host": front.name,
            **check_public_endpoint(front.domain, front.address, ca_bundle=target.ca_bundle),
        }
    healthy = bool(hosts) and all(h["healthy"] for h in hosts) and (entry is None or entry["ok"])
    return {"healthy": healthy, "hosts": hosts, "balancer": entry, **fleet}


# ---------------------------------------------------------------- raw report -> shape ---


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
