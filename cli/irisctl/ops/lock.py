"""The deploy lock on each host: one deploy at a time, taken before anything is built.

A refusal arrives as data: the lock task reports ``iris_report.lock_refused`` (holder, since,
version, age), which :func:`irisctl.runner.lock_refusal` raises as DeployLockedError.
"""

from __future__ import annotations

import getpass
import secrets
import socket
from typing import Any

from irisctl.errors import IrisctlError
from irisctl.ops.target import StepCallback, Target, host_reports
from irisctl.runner import raise_for_result, run_playbook


def deploy_holder() -> str:
    """Who holds the deploy lock: ``user@hostname`` of the operator."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


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
        host_reports(result)  # every host answered
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


def unlock(target: Target) -> dict[str, Any]:
    """Remove the deploy lock whoever holds it; per host, what it held and how old it was."""
    return {
        "hosts": [
            {
                "host": host,
                "removed": bool(report.get("removed")),
                "lock": report.get("lock"),
                "age_seconds": report.get("age_seconds"),
            }
            for host, report in target.reports("unlock").items()
        ]
    }
