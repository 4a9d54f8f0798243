"""Changing what a host serves: deploy, provision, rollback, restart; each ends with health.

A deploy takes the deploy lock first (so a refused deploy builds nothing), then ships the
release with ``deploy.yml``, which gates it on health and rolls back by itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from irisctl.errors import UnhealthyError
from irisctl.ops.lock import deploy_holder, release_deploy_lock, take_deploy_lock
from irisctl.ops.releases import check_release_source, prepare_release, release_vars
from irisctl.ops.reports import health
from irisctl.ops.target import StepCallback, Target
from irisctl.runner import PlayResult


def deploy(
    target: Target,
    *,
    version: str | None = None,
    from_path: Path | None = None,
    check: bool = False,
    release_lock: bool = False,
    batch_size: int = 1,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Take the deploy lock, build, ship with ``deploy.yml`` (health-gated, rolls back by
    itself), then summarise. The lock comes first so a refused deploy builds nothing. A fleet
    rolls ``batch_size`` hosts at a time, each out of the load balancer while it switches; a
    batch that fails its gate stops the roll there."""
    started = time.monotonic()
    if check:
        wheelhouse = prepare_release(version, from_path, on_step)
        result = target.run("deploy", extravars=release_vars(wheelhouse), check=True)
        return {**_check_summary(result), "version": wheelhouse.version}
    check_release_source(from_path)
    lock = take_deploy_lock(target, version=version, force=release_lock, on_step=on_step)
    try:
        wheelhouse = prepare_release(version, from_path, on_step)
        extravars = {**release_vars(wheelhouse), **lock, "iris_deploy_batch_size": batch_size}
        result = target.run("deploy", extravars=extravars)
    except BaseException:
        # deploy.yml releases the lock itself once it has run; this covers a failed build, a
        # play that stopped before its own release, and Ctrl-C.
        release_deploy_lock(target, lock)
        raise
    return _summary(target, "deploy", result, wheelhouse.version, started)


def provision(
    target: Target,
    *,
    version: str | None = None,
    from_path: Path | None = None,
    check: bool = False,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """The full ``site.yml`` on a (bare) host, deploying a release too."""
    started = time.monotonic()
    wheelhouse = prepare_release(version, from_path, on_step)
    extravars = {**release_vars(wheelhouse), "iris_deploy_holder": deploy_holder()}
    result = target.run("site", extravars=extravars, check=check)
    if check:
        return {**_check_summary(result), "version": wheelhouse.version}
    return _summary(target, "provision", result, wheelhouse.version, started)


def rollback(target: Target, version: str | None = None, batch_size: int = 1) -> dict[str, Any]:
    """``rollback.yml``: to ``version``, or by default to the previous release; a fleet rolls
    back ``batch_size`` hosts at a time, as a deploy rolls forward."""
    started = time.monotonic()
    extravars: dict[str, Any] = {"iris_deploy_batch_size": batch_size}
    if version:
        extravars["service_rollback_to"] = version
    result = target.run("rollback", extravars=extravars)
    return _summary(target, "rollback", result, version, started)


def restart(target: Target) -> dict[str, Any]:
    started = time.monotonic()
    result = target.run("restart")
    return _summary(target, "restart", result, None, started)


def raise_if_unhealthy(summary: dict[str, Any], what: str) -> None:
    """After a change: UnhealthyError naming the first failing check, if any host has one."""
    if summary["healthy"]:
        return
    for host in summary["health"]:
        failing = [c for c in host["checks"] if not c["ok"]]
        if failing:
            check = failing[0]
            raise UnhealthyError(
                f"{what}, but {host['host']} is unhealthy: {check['name']}: {check['detail']}"
            )
    raise UnhealthyError(f"{what}, but the service is unhealthy")


def _check_summary(result: PlayResult) -> dict[str, Any]:
    return {
        "check": True,
        "duration_seconds": round(result.duration, 1),
        "hosts": sorted(result.hosts),
        "changes": [{"host": h, "task": t, "diff": d} for h, t, d in result.changed_tasks],
    }


def _summary(
    target: Target, action: str, result: PlayResult, version: str | None, started: float
) -> dict[str, Any]:
    """After a play that changed the release: what serves now, and whether it is healthy."""
    report = health(target.quiet())
    versions = {h["host"]: h.get("version") for h in report["hosts"]}
    return {
        "action": action,
        "version": version,
        "hosts": sorted(result.hosts),
        "serving": versions,
        "changed": sum(s.changed for s in result.hosts.values()),
        "duration_seconds": round(time.monotonic() - started, 1),
        "healthy": report["healthy"],
        "health": report["hosts"],
    }
