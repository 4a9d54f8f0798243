"""irisctl cache restore [--from ID] [--yes]."""

from __future__ import annotations

import re

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.cache import cache_restore

# The admin tool's backup ids: <UTC time>-<host> (iris_service.cache_backup.ID_RE).
_ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[A-Za-z0-9.-]{1,63}$")


def _backup_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _ID_RE.match(value):
        raise click.BadParameter(f"{value!r} is not a backup id (see `irisctl cache backups`)")
    return value


@click.command("restore", epilog=EXIT_CODES_HELP)
@click.option("--from", "backup_id", metavar="ID", callback=_backup_id, help="Default: latest.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_options
def command(opts: Options, backup_id: str | None, yes: bool, as_json: bool) -> None:
    """Restore a backup into the cache of every host (default: the latest backup).

    Entries already in a host's cache are kept (an entry written since the backup wins);
    expired or corrupt entries are skipped, then the cache's size cap applies. Serving goes on
    meanwhile. Exit 1 when there is no such backup, or none at all.

    \b
    Examples:
      irisctl cache restore
      irisctl cache restore --from 20260101T031500.000Z-iris-prod-1 --yes --json
    """
    target = opts.target(progress=False)
    if not yes:
        what = f"backup {backup_id}" if backup_id else "the latest backup"
        where = target.limit or "all hosts"
        click.confirm(f"Restore {what} into the cache on {where}?", abort=True)
    with render.working("restoring the cache"):
        data = cache_restore(target, backup_id=backup_id)
    if as_json:
        render.emit_json(data)
        return
    for host in data["hosts"]:
        render.plain(
            f"{host['host']}: restored {host['restored']} entries from {host['id']} "
            f"(kept {host['kept_existing']} present, skipped {host['skipped_expired']} expired "
            f"and {host['skipped_corrupt']} corrupt, evicted {host['evicted']}) "
            f"in {host['seconds']}s"
        )
