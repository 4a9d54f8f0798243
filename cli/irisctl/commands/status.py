"""irisctl status."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.reports import status


@click.command("status", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """Service state and uptime, version, nginx, certificate expiry, disk free, cache size.

    \b
    Examples:
      irisctl status
      irisctl -i inventory/production --limit iris-1 status --json
    """
    with render.working("reading status"):
        data = status(opts.target(progress=False))
    if as_json:
        render.emit_json(data)
    else:
        render.status_table(data)
