"""Where a command acts (an inventory, a ``--limit``, progress) and what read-only plays report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irisctl.errors import IrisctlError
from irisctl.runner import EventCallback, PlayResult, run_playbook

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

    def reports(self, playbook: str, **kwargs: Any) -> dict[str, Any]:
        """Run a playbook that ends by printing ``iris_report``: each host's report."""
        return host_reports(self.run(playbook, **kwargs))


def host_reports(result: PlayResult) -> dict[str, Any]:
    """Each host's ``iris_report``, sorted by host; a host that ran without one is an error."""
    missing = sorted(set(result.hosts) - set(result.reports))
    if missing:
        raise IrisctlError(f"{result.playbook} returned no report for {', '.join(missing)}")
    return dict(sorted(result.reports.items()))
