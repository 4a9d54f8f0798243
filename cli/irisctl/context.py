"""The options every command shares, and the decorators commands use to get them."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from irisctl import render
from irisctl.inventory import ResolvedInventory, resolve_inventory
from irisctl.ops.target import Target
from irisctl.sandbox.hosts import sandbox_ca_bundle

CA_BUNDLE_ENV = "IRISCTL_CA_BUNDLE"


@dataclass
class Options:
    """The global options, resolved lazily so `--help` and `sandbox up` need no inventory."""

    inventory_option: str | None = None
    limit: str | None = None
    verbosity: int = 0
    ca_bundle: str | None = None
    _resolved: ResolvedInventory | None = field(default=None, repr=False)

    def inventory(self) -> ResolvedInventory:
        if self._resolved is None:
            self._resolved = resolve_inventory(self.inventory_option)
        return self._resolved

    def target(self, progress: bool = True) -> Target:
        """Where to act; ``progress`` streams the play's tasks to stderr."""
        resolved = self.inventory()
        ca_bundle = self.ca_bundle
        if ca_bundle is None and resolved.is_sandbox:
            ca_bundle = sandbox_ca_bundle()
        show = progress or self.verbosity > 0
        printer = render.ProgressPrinter(raw=self.verbosity > 0) if show else None
        return Target(resolved.path, self.limit, self.verbosity, printer, ca_bundle)


pass_options = click.make_pass_decorator(Options)

JSON_REQUESTED = "irisctl.json"


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    # Errors are rendered by the root group, which must know to print them as JSON too.
    if value:
        ctx.meta[JSON_REQUESTED] = True
    return value


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    callback=_remember_json,
    help="Print JSON on stdout instead of a table (errors too).",
)
