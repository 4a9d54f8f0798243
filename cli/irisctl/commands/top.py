"""irisctl top."""

from __future__ import annotations

import time

import click
from rich.live import Live

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.top import snapshot

EXIT_INTERRUPTED = 130


@click.command("top", epilog=EXIT_CODES_HELP + "\n\nCtrl-C ends the live view: exit 130.")
@click.option("--once", is_flag=True, help="One snapshot, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=1.0),
    default=5.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@json_option
@pass_options
def command(opts: Options, once: bool, interval: float, as_json: bool) -> None:
    """Live view of each host and the fleet: requests/s, in flight, cache hit rate, p50/p99
    latency, model calls and spend today against budget, release, certificate days, disk.

    The cache and spend numbers are those of `irisctl cache stats` (the same source);
    requests/s and latency are over the access log's last minute. With --json and without
    --once, one JSON line per refresh.

    \b
    Examples:
      irisctl top
      irisctl top --once --json | jq '.fleet.cache.hit_rate'
      irisctl -i inventory/production top --interval 10
    """
    target = opts.target(progress=False)
    if once:
        with render.working("reading the hosts"):
            data = snapshot(target)
        if as_json:
            render.emit_json(data)
        else:
            render.out.print(render.top_table(data))
        return
    try:
        if as_json:
            while True:
                started = time.monotonic()
                render.json_line(snapshot(target))
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        with render.working("reading the hosts"):
            data = snapshot(target)
        with Live(render.top_table(data), console=render.out, auto_refresh=False) as live:
            while True:
                started = time.monotonic()
                live.update(render.top_table(snapshot(target)), refresh=True)
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
