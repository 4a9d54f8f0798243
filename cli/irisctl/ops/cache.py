"""The analysis cache on each host, through ``iris-service-admin`` (``cache.yml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from irisctl.errors import ConfigError
from irisctl.ops.target import Target


def _admin(target: Target, action: str, **extravars: Any) -> dict[str, Any]:
    return target.reports("cache", extravars={"iris_cache_action": action, **extravars})


def cache_stats(target: Target) -> dict[str, Any]:
    raw = _admin(target, "stats")
    return {"hosts": [{"host": host, **report["result"]} for host, report in raw.items()]}


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
