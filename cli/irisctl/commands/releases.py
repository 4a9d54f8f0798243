"""irisctl releases."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.reports import releases


@click.command("releases", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """List the releases installed on each host, newest first, with age; * marks current.

    \b
    Examples:
      irisctl releases
      irisctl releases --json | jq -r '.hosts[0].current'
    """
    with render.working("listing releases"):
        data = releases(opts.target(progress=False))
    if as_json:
        render.emit_json(data)
    else:
        render.releases_table(data)
