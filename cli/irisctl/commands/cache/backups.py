"""irisctl cache backups."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.humanize import human_bytes, human_duration
from irisctl.ops.cache import cache_backups


def _table(data: dict[str, Any]) -> None:
    """One table per bucket and prefix (hosts usually share one)."""
    shown = set()
    for host in data["hosts"]:
        where = f"s3://{host['bucket']}/{host['prefix']}/"
        if where in shown:
            continue
        shown.add(where)
        table = Table(title=f"cache backups in {where}")
        for column in ("id", "size", "entries", "age"):
            table.add_column(column)
        for item in host["backups"]:
            entries = item["entries"]
            table.add_row(
                item["id"],
                human_bytes(item["bytes"]),
                "-" if entries is None else str(entries),
                human_duration(item["age_seconds"]) + " ago",
            )
        render.out.print(table if host["backups"] else f"no backups in {where}")


@click.command("backups", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """The backups in the hosts' bucket, newest first: id, size, entries and age.

    \b
    Examples:
      irisctl cache backups
      irisctl cache backups --json | jq -r '.hosts[0].backups[0].id'
    """
    with render.working("listing backups"):
        data = cache_backups(opts.target(progress=False))
    if as_json:
        render.emit_json(data)
    else:
        _table(data)
