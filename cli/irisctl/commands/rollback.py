"""irisctl rollback."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.commands.deploy import batch_size_option
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.deploy import raise_if_unhealthy, rollback


@click.command("rollback", epilog=EXIT_CODES_HELP)
@click.argument("version", required=False)
@batch_size_option
@json_option
@pass_options
def command(opts: Options, version: str | None, batch_size: int, as_json: bool) -> None:
    """Switch back to VERSION, by default the release before the current one.

    On a fleet it rolls like a deploy: --batch-size hosts at a time, each out of the load
    balancer while it switches.

    \b
    Examples:
      irisctl rollback
      irisctl rollback 1.3.2
      irisctl releases                    # which versions are installed
    """
    data = rollback(opts.target(), version, batch_size)
    if as_json:
        render.emit_json(data)
    else:
        render.summary(data)
    raise_if_unhealthy(data, "rolled back")
