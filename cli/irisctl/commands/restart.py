"""irisctl restart."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.deploy import raise_if_unhealthy, restart


@click.command("restart", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """Restart the service on each host, then check its health.

    \b
    Examples:
      irisctl restart
      irisctl --limit iris-1 restart
    """
    data = restart(opts.target())
    if as_json:
        render.emit_json(data)
    else:
        render.summary(data)
    raise_if_unhealthy(data, "restarted")
