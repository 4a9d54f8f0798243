"""irisctl cache backup."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.humanize import human_bytes
from irisctl.ops.cache import cache_backup


@click.command("backup", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """Back each host's cache up to its S3 bucket now (the daily timer does the same).

    The host does the S3 work with its own role; the backup never blocks serving. Exit 3 when
    no bucket is configured (cache_backup_bucket), 1 when S3 refuses or cannot be reached.

    \b
    Examples:
      irisctl cache backup
      irisctl cache backup --json | jq -r '.hosts[].id'
    """
    with render.working("backing up the cache"):
        data = cache_backup(opts.target(progress=False))
    if as_json:
        render.emit_json(data)
        return
    for host in data["hosts"]:
        render.plain(
            f"{host['host']}: backup {host['id']}: {host['entries']} entries, "
            f"{human_bytes(host['bytes'])} in {host['seconds']}s "
            f"-> s3://{host['bucket']}/{host['key']}"
        )
