"""More than one host: which release each host serves (drift) and the fleet's load balancer.

``status``, ``releases`` and ``health`` add ``versions`` and ``drift`` to what they report;
``health`` also checks the balancer's public endpoint when the inventory has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irisctl.inventory import load_inventory

BALANCER_GROUP = "iris_balancer"


@dataclass(frozen=True)
class Balancer:
    name: str
    domain: str
    address: str


def version_drift(versions: Mapping[str, str | None]) -> dict[str, Any]:
    """``{"versions": {version: [hosts]}, "drift": bool}`` from each host's version; a host
    serving nothing counts as a version of its own ("none"), so it shows as drift too."""
    by_version: dict[str, list[str]] = {}
    for host, version in sorted(versions.items()):
        by_version.setdefault(version or "none", []).append(host)
    return {"versions": by_version, "drift": len(by_version) > 1}


def balancer(inventory: Path) -> Balancer | None:
    """The inventory's load balancer (first host of ``iris_balancer``), or None."""
    from ansible.vars.manager import VariableManager

    loader, manager = load_inventory(inventory)
    group = manager.groups.get(BALANCER_GROUP)
    members = group.get_hosts() if group else []
    if not members:
        return None
    host = members[0]
    values = VariableManager(loader=loader, inventory=manager).get_vars(host=host)
    return Balancer(
        name=host.name,
        domain=str(values.get("iris_domain") or ""),
        address=str(values.get("ansible_host") or host.name),
    )
