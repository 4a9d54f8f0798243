"""irisctl aws plan."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.aws import plan


@click.command("plan", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """What `aws up` would create or change; changes nothing.

    \b
    Examples:
      irisctl -i inventory/production aws plan
      irisctl -i inventory/production aws plan --json | jq '.changed'
    """
    data = plan(opts.target())
    if as_json:
        render.emit_json(data)
        return
    render.aws_resources_table(data, "plan")
    count = data["changed"]
    render.plain(f"{count} resource(s) to create or change" if count else "no change")
