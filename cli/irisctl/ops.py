"""What each irisctl command does, over :mod:`irisctl.runner`; commands only parse and render.

Every function runs one or two playbooks and returns plain data (the ``--json`` shape).
"""

from __future__ import annotations

import getpass
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irisctl import reports
from irisctl.build import (
    BuildError,
    Wheelhouse,
    build_wheelhouse,
    normalized_version,
    source_version,
    wheelhouse_from,
)
from irisctl.errors import ConfigError, IrisctlError, UnhealthyError
from irisctl.paths import project_root
from irisctl.public import check_public_endpoint
from irisctl.runner import EventCallback, PlayResult, raise_for_result, run_playbook

StepCallback = Callable[[str], None]


@dataclass
class Target:
    """Where a command acts: an inventory, an optional ``--limit``, and how to report progress."""

    inventory: Path
    limit: str | None = None
    verbosity: int = 0
    on_event: EventCallback | None = None
    ca_bundle: str | None = None

    def run(self, playbook: str, **kwargs: Any) -> PlayResult:
        return run_playbook(
            playbook,
            self.inventory,
            limit=self.limit,
            verbosity=self.verbosity,
            on_event=self.on_event,
            **kwargs,
        )

    def quiet(self) -> Target:
        """The same target without progress output (for follow-up reads)."""
        return Target(self.inventory, self.limit, self.verbosity, None, self.ca_bundle)


def deploy_holder() -> str:
    """Who holds the deploy lock: ``user@hostname`` of the operator."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


# ------------------------------------------------------------------------- releases ---


def prepare_release(
    version: str | None, from_path: Path | None, on_step: StepCallback | None = None
) -> Wheelhouse:
    """Build the wheelhouse (or take a prebuilt one) into ``build/releases/<version>/``."""
    step = on_step or (lambda _msg: None)
    releases_dir = project_root() / "build" / "releases"
    try:
        if from_path is not None:
            check_release_source(from_path)
            step(f"preparing the release from {from_path}")
            staged = releases_dir / f"from-{from_path.stem}"
            wheelhouse = wheelhouse_from(from_path, staged)
            if version and wheelhouse.version != normalized_version(version):
                raise ConfigError(
                    f"--from {from_path} holds version {wheelhouse.version}, not {version}"
                )
            return wheelhouse
        target_version = version or source_version()
        step(f"building release {target_version}")
        return build_wheelhouse(releases_dir / target_version, version=version)
    except BuildError as exc:
        raise IrisctlError(f"build failed: {exc}") from exc
    except FileNotFoundError as exc:
        raise ConfigError(f"build failed: {exc}") from exc


def check_release_source(from_path: Path | None) -> None:
    """A prebuilt release given with --from must exist (checked before any lock is taken)."""
    if from_path is not None and not from_path.exists():
        raise ConfigError(f"--from {from_path}: no such file or directory")


def _release_vars(wheelhouse: Wheelhouse) -> dict[str, Any]:
    return {"service_wheelhouse_dir": str(wheelhouse.path), "service_version": wheelhouse.version}


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
    summary = {
        "action": action,
        "version": version,
        "hosts": sorted(result.hosts),
        "serving": versions,
        "changed": sum(s.changed for s in result.hosts.values()),
        "duration_seconds": round(time.monotonic() - started, 1),
        "healthy": report["healthy"],
        "health": report["hosts"],
    }
    return summary


def raise_if_unhealthy(summary: dict[str, Any], what: str) -> None:
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


def deploy(
    target: Target,
    *,
    version: str | None = None,
    from_path: Path | None = None,
    check: bool = False,
    release_lock: bool = False,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Take the deploy lock, build, ship with ``deploy.yml`` (health-gated, rolls back by
    itself), then summarise. The lock comes first so a refused deploy builds nothing."""
    started = time.monotonic()
    if check:
        wheelhouse = prepare_release(version, from_path, on_step)
        result = target.run("deploy", extravars=_release_vars(wheelhouse), check=True)
        return {**_check_summary(result), "version": wheelhouse.version}
    check_release_source(from_path)
    lock = take_deploy_lock(target, version=version, force=release_lock, on_step=on_step)
    try:
        wheelhouse = prepare_release(version, from_path, on_step)
        extravars = {**_release_vars(wheelhouse), **lock}
        result = target.run("deploy", extravars=extravars)
    except BaseException:
        # deploy.yml releases the lock itself once it has run; this covers a failed build, a
        # play that stopped before its own release, and Ctrl-C.
        release_deploy_lock(target, lock)
        raise
    return _summary(target, "deploy", result, wheelhouse.version, started)


def take_deploy_lock(
    target: Target,
    *,
    version: str | None,
    force: bool = False,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Take the lock on every target host (``lock.yml``); the extra vars that name it.

    Raises DeployLockedError, with the holder as data, when another deploy holds it anywhere;
    the hosts where it was taken are released again first.
    """
    if on_step:
        on_step("taking the deploy lock")
    lock = {
        "iris_deploy_lock_token": secrets.token_hex(10),
        "iris_deploy_holder": deploy_holder(),
        "iris_deploy_force_unlock": force,
        "service_version": version or "",
    }
    result = target.quiet().run("lock", extravars=lock, raise_on_failure=False)
    try:
        raise_for_result(result, limit=target.limit)  # a refusal raises DeployLockedError
        missing = sorted(set(result.hosts) - set(result.reports))
        if missing:
            raise IrisctlError(f"lock.yml returned no report for {', '.join(missing)}")
    except IrisctlError:
        release_deploy_lock(target, lock)  # where it was taken before the refusal elsewhere
        raise
    return {k: v for k, v in lock.items() if k != "service_version"}


def release_deploy_lock(target: Target, lock: dict[str, Any]) -> None:
    """Remove this deploy's own lock (never someone else's); best effort."""
    run_playbook(
        "unlock",
        target.inventory,
        limit=target.limit,
        extravars={
            "iris_deploy_lock_token": lock["iris_deploy_lock_token"],
            "service_unlock_any": False,
        },
        raise_on_failure=False,
    )


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
    extravars = {**_release_vars(wheelhouse), "iris_deploy_holder": deploy_holder()}
    result = target.run("site", extravars=extravars, check=check)
    if check:
        return {**_check_summary(result), "version": wheelhouse.version}
    return _summary(target, "provision", result, wheelhouse.version, started)


def rollback(target: Target, version: str | None = None) -> dict[str, Any]:
    """``rollback.yml``: to ``version``, or by default to the previous release."""
    started = time.monotonic()
    extravars = {"service_rollback_to": version} if version else {}
    result = target.run("rollback", extravars=extravars)
    return _summary(target, "rollback", result, version, started)


def restart(target: Target) -> dict[str, Any]:
    started = time.monotonic()
    result = target.run("restart")
    return _summary(target, "restart", result, None, started)


def unlock(target: Target) -> dict[str, Any]:
    """Remove the deploy lock whoever holds it; per host, what it held and how old it was."""
    raw = _reports(target, "unlock")
    return {
        "hosts": [
            {
                "host": host,
                "removed": bool(report.get("removed")),
                "lock": report.get("lock"),
                "age_seconds": report.get("age_seconds"),
            }
            for host, report in raw.items()
        ]
    }


# -------------------------------------------------------------------------- reports ---


def _reports(target: Target, playbook: str, **kwargs: Any) -> dict[str, Any]:
    result = target.run(playbook, **kwargs)
    missing = sorted(set(result.hosts) - set(result.reports))
    if missing:
        raise IrisctlError(f"{playbook} returned no report for {', '.join(missing)}")
    return dict(sorted(result.reports.items()))


def status(target: Target) -> dict[str, Any]:
    raw = _reports(target, "status")
    return {"hosts": [reports.build_status(host, report) for host, report in raw.items()]}


def releases(target: Target) -> dict[str, Any]:
    raw = _reports(target, "releases")
    return {"hosts": [reports.build_releases(host, report) for host, report in raw.items()]}


def health(target: Target, *, public: bool = True, min_cert_days: int = 14) -> dict[str, Any]:
    """Deep checks on each host plus the public HTTPS endpoint from here; never raises on
    an unhealthy host (the caller decides the exit code from ``healthy``)."""
    raw = _reports(target, "health")
    hosts = []
    for host, report in raw.items():
        checks = reports.health_checks(report, min_cert_days=min_cert_days)
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
                "version": reports.release_version(report.get("current") or ""),
                "serving_version": body.get("version") if isinstance(body, dict) else None,
                "checks": checks,
            }
        )
    return {"healthy": bool(hosts) and all(h["healthy"] for h in hosts), "hosts": hosts}


# ---------------------------------------------------------------------------- cache ---


def _admin(target: Target, action: str, **extravars: Any) -> dict[str, Any]:
    raw = _reports(target, "cache", extravars={"iris_cache_action": action, **extravars})
    return {host: report for host, report in raw.items()}


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
