"""irisctl cache stats."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.cache import cache_stats


@click.command("stats", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """Entries, bytes on disk, hit rate, model calls, tokens, cost spent and saved.

    \b
    Examples:
      irisctl cache stats
      irisctl cache stats --json | jq '.hosts[].hit_rate'
    """
    with render.working("reading cache stats"):
        data = cache_stats(opts.target(progress=False))
    if as_json:
        render.emit_json(data)
    else:
        render.cache_stats_table(data)
