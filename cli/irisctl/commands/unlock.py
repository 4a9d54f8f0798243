"""irisctl unlock."""

from __future__ import annotations

import click

from irisctl import ops, render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP


@click.command("unlock", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """Release a stale deploy lock (/var/lib/iris/deploy.lock) on each host.

    Only for a lock a crashed or interrupted deploy left behind: `irisctl deploy` says
    who holds the lock and since when.

    \b
    Examples:
      irisctl unlock
      irisctl deploy --release-lock       # the same, then deploy
    """
    data = ops.unlock(opts.target())
    if as_json:
        render.emit_json(data)
    elif data["changed"]:
        render.plain(f"released the deploy lock on {', '.join(data['changed'])}")
    else:
        render.plain("no deploy lock held")
