"""Named client keys on the hosts (``playbooks/keys.yml``): list, add, revoke, rotate.

The hosts hold the keys file (hashes only, ``iris_service.api_keys``); this module reads it from
every host, makes the change and writes the same file to every host (the newest revision any
host holds wins, so a host that missed a change catches up). A new key is made here with
``secrets`` and only its SHA-256 leaves this process: the key is returned to be printed once.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from irisctl.errors import EXIT_USAGE, IrisctlError
from irisctl.ops.target import Target

FORMAT = 1
DEFAULT_NAME = "default"
# The service's rule for names (iris_service.api_keys.NAME_RE): the host validates the file
# with it before it is put in place; checked here too so a typo fails before any play runs.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_PREFIX = "iris_"


class KeyArgumentError(IrisctlError):
    """An unknown or duplicate key name, a malformed limit or budget: exit 2."""

    exit_code = EXIT_USAGE


def check_name(name: str) -> str:
    if name == DEFAULT_NAME:
        raise KeyArgumentError(
            "the key named 'default' is IRIS_API_KEY (service_api_key in the inventory): "
            "change it there"
        )
    if not NAME_RE.match(name):
        raise KeyArgumentError(
            f"{name!r} is not a valid key name (letters, digits, '.', '_', '-'; "
            "up to 64, starting with a letter or digit)"
        )
    return name


def parse_rate(text: str) -> int:
    """Requests per minute: a whole number >= 0 (0: no limit for this key)."""
    try:
        value = int(text.strip())
    except ValueError:
        raise KeyArgumentError(
            f"--rate-per-minute must be a whole number of requests per minute, got {text!r}"
        ) from None
    if value < 0:
        raise KeyArgumentError(f"--rate-per-minute must be >= 0 (0: no limit), got {text!r}")
    return value


def parse_budget(text: str) -> float:
    """USD per UTC day: a number > 0."""
    try:
        value = float(text.strip().lstrip("$"))
    except ValueError:
        raise KeyArgumentError(
            f"--daily-budget-usd must be an amount in USD such as 5 or 0.50, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise KeyArgumentError(f"--daily-budget-usd must be a positive amount, got {text!r}")
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _new_key() -> tuple[str, str]:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hashlib.sha256(key.encode()).hexdigest()


def _parse_file(host: str, report: dict[str, Any]) -> dict[str, Any] | None:
    """The keys file one host reported (``None``: it has none); an unusable file is an error."""
    raw, error = report.get("file"), str(report.get("file_error") or "")
    if error:
        if "not found" in error or "No such file" in error:
            return None
        raise IrisctlError(f"cannot read the keys file on {host}: {error}")
    try:
        data = raw if isinstance(raw, dict) else json.loads(str(raw or ""))
    except ValueError as exc:
        raise IrisctlError(f"the keys file on {host} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise IrisctlError(f"the keys file on {host} is not an IRIS keys file")
    return data


def _read(target: Target) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every host's report, and the newest keys file among them (an empty one if none has)."""
    reports = target.reports("keys", extravars={"iris_keys_action": "read"})
    newest: dict[str, Any] = {"format": FORMAT, "revision": 0, "keys": {}}
    for host, report in reports.items():
        data = _parse_file(host, report)
        if data is not None and int(data.get("revision", 0)) >= int(newest["revision"]):
            newest = data
    return reports, newest


def _write(target: Target, base: dict[str, Any], keys: dict[str, Any]) -> None:
    content = {"format": FORMAT, "revision": int(base["revision"]) + 1, "updated": _now()}
    content["keys"] = dict(sorted(keys.items()))
    target.reports(
        "keys",
        extravars={
            "iris_keys_action": "write",
            "iris_keys_content": json.dumps(content, indent=2) + "\n",
            "iris_keys_expected_revision": int(base["revision"]),
        },
    )


def _existing(keys: dict[str, Any], name: str) -> dict[str, Any]:
    check_name(name)
    if name not in keys:
        known = ", ".join(sorted(keys)) or "none"
        raise KeyArgumentError(f"no key named {name!r} (keys: {known})")
    return dict(keys[name])


def add_key(
    target: Target, name: str, rate_per_minute: int | None, daily_budget_usd: float | None
) -> dict[str, Any]:
    check_name(name)
    _, current = _read(target)
    keys = dict(current["keys"])
    if name in keys:
        raise KeyArgumentError(f"a key named {name!r} exists already (rotate or revoke it)")
    key, digest = _new_key()
    keys[name] = {
        "sha256": digest,
        "created": _now(),
        "rate_per_minute": rate_per_minute,
        "daily_budget_usd": daily_budget_usd,
    }
    _write(target, current, keys)
    return {"name": name, "key": key}


def rotate_key(target: Target, name: str) -> dict[str, Any]:
    _, current = _read(target)
    keys = dict(current["keys"])
    entry = _existing(keys, name)
    key, entry["sha256"] = _new_key()
    entry["rotated"] = _now()
    keys[name] = entry
    _write(target, current, keys)
    return {"name": name, "key": key}


def revoke_key(target: Target, name: str) -> dict[str, Any]:
    _, current = _read(target)
    keys = dict(current["keys"])
    _existing(keys, name)
    del keys[name]
    _write(target, current, keys)
    return {"name": name, "revoked": True}


def _spent(values: list[float], scope: str) -> float:
    # One shared store reports the same spend on every host; per-host stores add up.
    return max(values, default=0.0) if scope == "shared" else sum(values)


def list_keys(target: Target) -> dict[str, Any]:
    """Every key with its limits and what it used, added up over the hosts."""
    reports, current = _read(target)
    usages = []
    for host, report in reports.items():
        usage = report.get("usage") or {}
        if "error" in usage:
            raise IrisctlError(f"cannot read key use on {host}: {usage['error']}")
        usages.append(usage)
    scope = next((u.get("storage", "host") for u in usages), "host")
    per_host, source = _use_by_host(reports)
    names = set(current["keys"]) | {name for u in usages for name in u.get("keys", {})}
    rows = []
    for name in sorted(names, key=lambda n: (n != DEFAULT_NAME, n)):
        entry = current["keys"].get(name, {})
        used = [u["keys"][name] for u in usages if name in u.get("keys", {})]
        if name != DEFAULT_NAME and not entry:
            continue  # a revoked key's counters stay on the hosts; it is no key any more
        by_host = [{"host": host, **use[name]} for host, use in per_host.items() if name in use]
        rows.append(
            {
                "name": name,
                "created": entry.get("created"),
                "rotated": entry.get("rotated"),
                "last_used": max(
                    (u["last_used"] for u in by_host if u.get("last_used")), default=None
                ),
                "requests": sum(int(u["requests"]) for u in by_host),
                "model_calls": sum(int(u["model_calls"]) for u in by_host),
                "cost_usd": round(sum(float(u["cost_usd"]) for u in by_host), 8),
                "rate_per_minute": entry.get("rate_per_minute"),
                "spent_today_usd": round(_spent([u["spent_today_usd"] for u in used], scope), 8),
                "daily_budget_usd": entry.get("daily_budget_usd"),
                "by_host": by_host,
            }
        )
    spend = [u.get("global", {}) for u in usages]
    return {
        "keys": rows,
        "revision": current["revision"],
        "default_rate_per_minute": next((u.get("default_rate_per_minute") for u in usages), None),
        "global": {
            "spent_today_usd": round(
                _spent([float(g.get("spent_today_usd", 0)) for g in spend], scope), 8
            ),
            "daily_budget_usd": next((g.get("daily_budget_usd") for g in spend), None),
            "budget_resets_at": next((g.get("budget_resets_at") for g in spend), None),
        },
        "hosts": sorted(reports),
        "by_host_from": source,
    }


def _use_by_host(reports: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], str]:
    """Each host's use of each key: from the shared cache store when the hosts have one (one
    truth for the fleet, hosts no longer in the inventory included), else each host's own."""
    for report in reports.values():
        shared = (report.get("usage") or {}).get("shared") or {}
        if "hosts" in shared:
            spent = shared.get("spent_today_by_host") or {}
            return {
                host: {
                    name: {**use, "spent_today_usd": spent.get(host, {}).get(name)}
                    for name, use in keys.items()
                }
                for host, keys in sorted(shared["hosts"].items())
            }, "shared store"
    return {
        host: (report.get("usage") or {}).get("keys", {})
        for host, report in sorted(reports.items())
    }, "hosts"
