"""irisctl aws down."""

from __future__ import annotations

import sys
from typing import Any

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP, ConfigError
from irisctl.ops.aws import down


def _confirmer(everything: bool) -> Any:
    def confirm(doomed: list[dict[str, Any]]) -> None:
        listing = ", ".join(f"{r['kind']} {r.get('name') or r.get('id')}" for r in doomed)
        if not sys.stdin.isatty():
            raise ConfigError(f"down would remove {listing}: pass --yes to confirm")
        kept = "" if everything else " (the Elastic IP, secret, bucket and role are kept)"
        click.confirm(f"Remove {listing}{kept}?", abort=True, err=True)

    return confirm


@click.command("down", epilog=EXIT_CODES_HELP)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also remove the Elastic IP, the secret, the backup bucket, the IAM role and the record.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--skip-backup", is_flag=True, help="Remove the instance without backing its cache up first."
)
@json_option
@pass_options
def command(opts: Options, everything: bool, yes: bool, skip_backup: bool, as_json: bool) -> None:
    """Remove the instance and its security group, after a cache backup.

    The Elastic IP (so the name keeps its address), the secret, the backup bucket and the IAM
    role stay for the next `aws up`, unless --all. Nothing left to remove is a clean no-op.

    \b
    Examples:
      irisctl -i inventory/production aws down
      irisctl -i inventory/production aws down --all --yes --json
    """
    data = down(
        opts.target(),
        everything=everything,
        skip_backup=skip_backup,
        confirm=None if yes else _confirmer(everything),
    )
    if as_json:
        render.emit_json(data)
        return
    if data["nothing_to_remove"]:
        render.plain("nothing to remove: no resource of this deployment exists")
        return
    for host in (data.get("backup") or {}).get("hosts", []):
        render.plain(f"{host['host']}: cache backed up as {host['id']} ({host['entries']} entries)")
    render.aws_resources_table(data, "down")
    render.plain(f"removed {len(data['removed'])} resource(s)")
