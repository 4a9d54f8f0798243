"""The deployment on AWS: ``aws.yml`` on the controller, and ``up``'s path to a verified host.

``plan`` is ``up`` in check mode. ``up`` creates or updates the resources, then converges the
instance the inventory finds by its tags (``site.yml`` deploys too), restores the latest cache
backup onto a new instance, and ends with the same health check as ``irisctl health``.
``down`` backs the cache up before the instance goes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from irisctl.errors import ConfigError, IrisctlError
from irisctl.ops.cache import cache_backup, restore_latest_if_empty
from irisctl.ops.deploy import provision, raise_if_unhealthy
from irisctl.ops.reports import health
from irisctl.ops.target import StepCallback, Target
from irisctl.runner import raise_for_result

# The environment variable the secret's value is read from (aws_secret_value_env's default).
SECRET_ENV = "OPENAI_API_KEY"
# What `down` removes (a fleet: its load balancer and cache too); `down --all` removes all.
DOWN_KINDS = (
    "instance",
    "security-group",
    "load-balancer",
    "target-group",
    "lb-security-group",
    "cache-store",
    "cache-security-group",
    "cache-subnet-group",
    "cache-url-parameter",
)

AskSecret = Callable[[str], str]
Confirm = Callable[[list[dict[str, Any]]], None]


def _controller(target: Target) -> Target:
    """The same inventory, acting on the controller (``--limit`` names hosts, not AWS)."""
    return Target(target.inventory, None, target.verbosity, target.on_event, target.ca_bundle)


def _as_bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def run_aws(target: Target, action: str, *, check: bool = False) -> dict[str, Any]:
    """``aws.yml`` with ``iris_aws_action``: its report; a failed task is one clear line."""
    result = _controller(target).run(
        "aws", extravars={"iris_aws_action": action}, check=check, raise_on_failure=False
    )
    if result.failures:
        failure = result.failures[0]
        raise IrisctlError(
            f"aws {'plan' if check else action}: {failure.message}",
            details=failure.details,
            data={"task": failure.task},
        )
    raise_for_result(result)
    report = result.reports.get("localhost")
    if not isinstance(report, dict):
        raise IrisctlError("aws.yml returned no report")
    resources = [
        {**item, "exists": _as_bool(item.get("exists")), "changed": _as_bool(item.get("changed"))}
        for item in report.get("resources", [])
    ]
    return {
        "deployment": report.get("deployment"),
        "region": report.get("region"),
        "account": report.get("account"),
        "fleet": _as_bool(report.get("fleet")),
        "resources": resources,
        "changed": int(report.get("changed", 0)),
    }


def resource(report: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((r for r in report["resources"] if r["kind"] == kind), {"kind": kind})


def dns_status(report: dict[str, Any]) -> dict[str, Any] | None:
    """Whether the public name resolves to the Elastic IP, and the record that makes it so."""
    record, address = resource(report, "dns-record"), resource(report, "elastic-ip")
    name, ip = record.get("name") or "", address.get("name") or ""
    if not name:
        return None
    try:
        resolved = sorted({str(info[4][0]) for info in socket.getaddrinfo(name, 443)})
    except OSError:
        resolved = []
    return {
        "name": name,
        "elastic_ip": ip,
        "resolves_to": resolved,
        "points_at_elastic_ip": bool(ip) and resolved == [ip],
        "managed_by_route53": bool(record.get("zone")),
        "route53_value": record.get("value") or None,
        "record": f"{name}. 300 IN A {ip}" if ip else "",
    }


def fleet_endpoints(report: dict[str, Any]) -> dict[str, Any] | None:
    """The fleet's two outputs: the load balancer's name for the operator's DNS record (and the
    certificate's validation record until ACM has issued it), and the hosts' IRIS_CACHE_URL."""
    if not report.get("fleet"):
        return None
    balancer, certificate = resource(report, "load-balancer"), resource(report, "certificate")
    store, url = resource(report, "cache-store"), resource(report, "cache-url-parameter")
    return {
        "load_balancer": balancer.get("dns_name") or None,
        "record": balancer.get("record") or None,
        "https": _as_bool(balancer.get("https")),
        "certificate_status": certificate.get("state") or None,
        "certificate_validation_records": certificate.get("validation_records") or [],
        "cache_endpoint": store.get("endpoint") or None,
        "cache_url": url.get("value") or None,
        "cache_password_secret": resource(report, "cache-secret").get("name") or None,
    }


def plan(target: Target) -> dict[str, Any]:
    """What ``up`` would create or change; changes nothing."""
    report = run_aws(target, "up", check=True)
    return {"action": "plan", **report}


def status(target: Target) -> dict[str, Any]:
    report = run_aws(target, "status")
    dashboard = resource(report, "dashboard")
    return {
        "action": "status",
        **report,
        "dns": dns_status(report),
        "endpoints": fleet_endpoints(report),
        "dashboard_url": dashboard.get("url") if dashboard.get("exists") else None,
    }


# The aws_secret task that refuses to create the secret without a value (roles/aws_secret).
SECRET_MISSING_TASK = "Refuse to create the secret without a value"


def _up_resources(target: Target, ask_secret: AskSecret | None) -> dict[str, Any]:
    """``aws.yml`` up. A new secret needs its value: from the environment, else asked for
    (never echoed) and the play run again; it fails on the secret, before anything else."""
    try:
        return run_aws(target, "up")
    except IrisctlError as exc:
        if exc.data.get("task") != SECRET_MISSING_TASK:
            raise
        if ask_secret is None:
            raise ConfigError(str(exc).removeprefix("aws up: ")) from None
        value = ask_secret(SECRET_ENV).strip()
        if not value:
            raise ConfigError("the new secret needs a value: none given") from None
        # Only this process and the play it starts see it: never an argument or a file.
        os.environ[SECRET_ENV] = value
        return run_aws(target, "up")


def up(
    target: Target,
    *,
    resources_only: bool = False,
    skip_dns_check: bool = False,
    version: str | None = None,
    from_path: Path | None = None,
    ask_secret: AskSecret | None = None,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    started = time.monotonic()
    step = on_step or (lambda _message: None)
    step("AWS resources")
    after = _up_resources(target, ask_secret)
    data: dict[str, Any] = {
        "action": "up",
        **after,
        "dns": dns_status(after),
        "endpoints": fleet_endpoints(after),
        "timings": {"resources_seconds": round(time.monotonic() - started, 1)},
    }
    if resources_only:
        return data
    dns = data["dns"]
    unresolved = dns and not dns["managed_by_route53"] and not dns["points_at_elastic_ip"]
    if unresolved and not skip_dns_check:
        raise IrisctlError(
            f"the AWS resources are ready, but {dns['name']} does not resolve to"
            f" {dns['elastic_ip']} yet (certbot needs it): set `{dns['record']}` at the"
            " registrar, then run `irisctl aws up` again (--skip-dns-check converges anyway)",
            data=data,
        )
    converge_started = time.monotonic()
    step("waiting for the instance")
    target.quiet().run("reachable")
    step("converging the instance")
    converged = provision(target, version=version, from_path=from_path, on_step=on_step)
    new_instance = resource(after, "instance").get("action") == "create"
    restored = restore_latest_if_empty(target.quiet()) if new_instance else None
    data["timings"]["converge_seconds"] = round(time.monotonic() - converge_started, 1)
    report = health(target.quiet())
    data.update(
        converge={k: converged[k] for k in ("version", "hosts", "changed", "duration_seconds")},
        cache_restore=restored,
        changed=after["changed"] + int(converged["changed"]),
        healthy=report["healthy"],
        health=report["hosts"],
    )
    data["timings"]["total_seconds"] = round(time.monotonic() - started, 1)
    raise_if_unhealthy(data, "the deployment is up")
    return data


def down(
    target: Target,
    *,
    everything: bool = False,
    skip_backup: bool = False,
    confirm: Confirm | None = None,
) -> dict[str, Any]:
    """Remove the instance and its security group (``everything``: every resource). The cache
    is backed up first; nothing to remove is a clean no-op. ``confirm`` (None: --yes) sees
    what would be removed before anything is."""
    started = time.monotonic()
    if confirm is not None:
        before = run_aws(target, "status")
        doomed = [
            r
            for r in before["resources"]
            if r["exists"] and (everything or r["kind"] in DOWN_KINDS)
        ]
        if doomed:
            confirm(doomed)
    backup = None if skip_backup else _backup_before_down(target)
    after = run_aws(target, "down-all" if everything else "down")
    removed = [r for r in after["resources"] if r.get("action") == "delete"]
    return {
        "action": "down --all" if everything else "down",
        **after,
        "backup": backup,
        "removed": removed,
        "nothing_to_remove": not removed,
        "duration_seconds": round(time.monotonic() - started, 1),
    }


def _backup_before_down(target: Target) -> dict[str, Any] | None:
    """A cache backup of every running instance; None when the inventory finds none."""
    try:
        return cache_backup(target.quiet())
    except ConfigError as exc:
        if str(exc).startswith("no host matched"):
            return None
        raise _backup_failed(exc) from exc
    except IrisctlError as exc:
        raise _backup_failed(exc) from exc


def _backup_failed(exc: IrisctlError) -> IrisctlError:
    return IrisctlError(
        f"not removing anything: the cache backup failed ({exc}); "
        "--skip-backup removes the instance without one",
        data=exc.data,
    )
