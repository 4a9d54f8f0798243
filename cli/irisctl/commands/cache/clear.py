"""irisctl cache clear [--older-than AGE] [--yes]."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.humanize import parse_duration
from irisctl.ops.cache import cache_clear


def _age(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("clear", epilog=EXIT_CODES_HELP)
@click.option(
    "--older-than", metavar="AGE", callback=_age, help="Only entries older than 7d, 12h, 30m…"
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_options
def command(opts: Options, older_than: int | None, yes: bool, as_json: bool) -> None:
    """Remove cached analyses (all, or only those older than AGE); asks first.

    \b
    Examples:
      irisctl cache clear
      irisctl cache clear --older-than 30d --yes
    """
    target = opts.target(progress=False)
    if not yes:
        what = f"entries older than {older_than}s" if older_than is not None else "ALL entries"
        click.confirm(f"Remove {what} from the cache on {target.limit or 'all hosts'}?", abort=True)
    with render.working("clearing the cache"):
        data = cache_clear(target, older_than=older_than)
    if as_json:
        render.emit_json(data)
    else:
        for host in data["hosts"]:
            render.plain(f"{host['host']}: removed {host['removed']} entries")
