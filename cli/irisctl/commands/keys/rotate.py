"""irisctl keys rotate."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.commands.keys.options import name_argument
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.keys import rotate_key


@click.command("rotate", epilog=EXIT_CODES_HELP)
@name_argument
@json_option
@pass_options
def command(opts: Options, name: str, as_json: bool) -> None:
    """Replace key NAME by a new one (same limits) and print it, once.

    The old key stops working on the next request. Exit 2 when there is no key NAME.

    \b
    Examples:
      irisctl keys rotate alice
      irisctl keys rotate alice --json | jq -r .key
    """
    with render.working(f"rotating key {name}"):
        data = rotate_key(opts.target(progress=False), name)
    if as_json:
        render.emit_json(data)
    else:
        render.new_key(data)
