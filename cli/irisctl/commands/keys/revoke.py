"""irisctl keys revoke."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.commands.keys.options import name_argument
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.keys import revoke_key


@click.command("revoke", epilog=EXIT_CODES_HELP)
@name_argument
@json_option
@pass_options
def command(opts: Options, name: str, as_json: bool) -> None:
    """Remove key NAME from every host: it is refused from the next request on.

    Exit 2 when there is no key NAME.

    \b
    Examples:
      irisctl keys revoke alice
      irisctl keys revoke alice --json
    """
    with render.working(f"revoking key {name}"):
        data = revoke_key(opts.target(progress=False), name)
    if as_json:
        render.emit_json(data)
    else:
        render.plain(f"key {name} revoked")
