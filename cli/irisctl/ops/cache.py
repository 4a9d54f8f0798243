"""The analysis cache on each host, through ``iris-service-admin`` (``cache.yml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from irisctl.errors import ConfigError, IrisctlError
from irisctl.ops.target import Target


def _admin(target: Target, action: str, **extravars: Any) -> dict[str, Any]:
    return target.reports("cache", extravars={"iris_cache_action": action, **extravars})


def cache_stats(target: Target) -> dict[str, Any]:
    """Each host's own figures; with a shared cache store also ``fleet``: the store's figures
    (every host's counts in it and their total), read once though every host reports them."""
    raw = _admin(target, "stats")
    hosts = [{"host": host, **report["result"]} for host, report in raw.items()]
    shared = [host.pop("shared") for host in hosts if "shared" in host]
    if not shared:
        return {"hosts": hosts}
    # A host that could not reach the store says so; any host that could gives the figures.
    fleet = next((s for s in shared if "error" not in s), shared[0])
    return {"hosts": hosts, "fleet": fleet}


def cache_inspect(
    target: Target, *, key: str | None = None, file: Path | None = None, language: str | None = None
) -> dict[str, Any]:
    """The cached analysis for ``key``, or for a local source ``file`` hashed on the host."""
    extravars: dict[str, Any] = {}
    if file is not None:
        extravars["iris_cache_file"] = str(file.resolve())
        if language:
            extravars["iris_cache_language"] = language
    else:
        extravars["iris_cache_key"] = key
    raw = _admin(target, "inspect", **extravars)
    hosts = []
    for host, report in raw.items():
        rc, result = int(report["rc"]), report["result"]
        if rc == 2:
            raise ConfigError(f"cache inspect on {host}: {result.get('error', 'bad request')}")
        hosts.append({"host": host, "found": rc == 0, **result})
    return {"hosts": hosts}


def cache_clear(target: Target, *, older_than: int | None = None) -> dict[str, Any]:
    extravars = {"iris_cache_older_than": older_than} if older_than is not None else {}
    raw = _admin(target, "clear", **extravars)
    return {"hosts": [{"host": host, **report["result"]} for host, report in raw.items()]}


# iris-service-admin's exit codes for the backup commands (service/iris_service/cache_backup.py).
ADMIN_NOT_CONFIGURED = 4
ADMIN_NO_BACKUPS = 5


def _backup_results(action: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Each host's admin report; a host whose admin tool refused is one clear error."""
    hosts = []
    for host, report in raw.items():
        rc, result = int(report["rc"]), report["result"]
        if rc == ADMIN_NOT_CONFIGURED:
            raise ConfigError(
                f"cache {action} on {host}: {result.get('error')}: set cache_backup_bucket "
                "in the inventory and provision",
                data={"host": host, "admin_exit": rc},
            )
        if rc != 0:
            raise IrisctlError(
                f"cache {action} on {host}: {result.get('error', f'admin tool exit {rc}')}",
                data={"host": host, "admin_exit": rc},
            )
        hosts.append({"host": host, **result})
    return hosts


def cache_backup(target: Target) -> dict[str, Any]:
    """A backup of each host's cache to the bucket: id, key, entries, bytes, seconds."""
    return {"hosts": _backup_results("backup", _admin(target, "backup"))}


def cache_backups(target: Target) -> dict[str, Any]:
    """The backups each host sees in its bucket, newest first (hosts may share a bucket)."""
    return {"hosts": _backup_results("backups", _admin(target, "backups"))}


def cache_restore(target: Target, *, backup_id: str | None = None) -> dict[str, Any]:
    """Restore ``backup_id`` (default: the latest) on every host; entries present are kept."""
    extravars = {"iris_cache_backup_id": backup_id} if backup_id else {}
    return {"hosts": _backup_results("restore", _admin(target, "restore", **extravars))}


def restore_latest_if_empty(target: Target) -> dict[str, Any]:
    """After a fresh host is converged: restore the latest backup where the cache is empty and
    a backup exists. A warm cache, no backups or no bucket configured is a no-op, reported as
    each host's ``skipped_reason``; anything else (access denied, S3 unreachable) raises."""
    raw = _admin(target, "restore", iris_cache_if_empty=True)
    hosts = []
    for host, report in raw.items():
        if int(report["rc"]) == ADMIN_NOT_CONFIGURED:
            hosts.append({"host": host, "restored": 0, "skipped_reason": "no backup bucket"})
        else:
            hosts.extend(_backup_results("restore", {host: report}))
    return {"hosts": hosts}
