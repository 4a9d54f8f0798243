"""irisctl unlock."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.lock import unlock


@click.command("unlock", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """Remove a stale deploy lock (/var/lib/iris/deploy.lock) on each host.

    Only for a lock a crashed or interrupted deploy left behind: `irisctl deploy` says
    who holds the lock and since when; this shows its holder and age as it removes it.

    \b
    Examples:
      irisctl unlock
      irisctl deploy --release-lock       # the same, then deploy
    """
    data = unlock(opts.target())
    if as_json:
        render.emit_json(data)
        return
    for host in data["hosts"]:
        lock = host["lock"] or {}
        if host["removed"]:
            age = host["age_seconds"]
            render.plain(
                f"{host['host']}: removed the deploy lock held by {lock.get('holder', 'unknown')}"
                f" since {lock.get('since', '?')}"
                + (f" ({age} s old)" if age is not None else "")
                + f", deploying version {lock.get('version') or '?'}"
            )
        else:
            render.plain(f"{host['host']}: no deploy lock held")
