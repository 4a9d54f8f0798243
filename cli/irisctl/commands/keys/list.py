"""irisctl keys list."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.keys import list_keys


@click.command("list", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """Every key: created, last used, requests, model calls, cost, today's spend vs budget.

    Counts are added up over the hosts.

    \b
    Examples:
      irisctl keys list
      irisctl keys list --json | jq '.keys[] | {name, requests}'
    """
    with render.working("reading keys"):
        data = list_keys(opts.target(progress=False))
    if as_json:
        render.emit_json(data)
    else:
        render.keys_table(data)
