"""irisctl rollback."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.deploy import raise_if_unhealthy, rollback


@click.command("rollback", epilog=EXIT_CODES_HELP)
@click.argument("version", required=False)
@json_option
@pass_options
def command(opts: Options, version: str | None, as_json: bool) -> None:
    """Switch back to VERSION, by default the release before the current one.

    \b
    Examples:
      irisctl rollback
      irisctl rollback 1.3.2
      irisctl releases                    # which versions are installed
    """
    data = rollback(opts.target(), version)
    if as_json:
        render.emit_json(data)
    else:
        render.summary(data)
    raise_if_unhealthy(data, "rolled back")
