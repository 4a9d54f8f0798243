"""irisctl keys add."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.commands.keys.options import budget_option, name_argument, rate_option
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.keys import add_key


@click.command("add", epilog=EXIT_CODES_HELP)
@name_argument
@rate_option
@budget_option
@json_option
@pass_options
def command(
    opts: Options,
    name: str,
    rate_per_minute: int | None,
    daily_budget_usd: float | None,
    as_json: bool,
) -> None:
    """Make a new key NAME on every host and print it, once.

    The key is shown here only: hosts keep its SHA-256. It works on the next request, without
    a restart. Exit 2 when NAME exists already or a limit is malformed.

    \b
    Examples:
      irisctl keys add alice
      irisctl keys add ci --rate-per-minute 30 --daily-budget-usd 2.50
      irisctl keys add bob --json | jq -r .key
    """
    with render.working(f"adding key {name}"):
        data = add_key(opts.target(progress=False), name, rate_per_minute, daily_budget_usd)
    if as_json:
        render.emit_json(data)
    else:
        render.new_key(data)
