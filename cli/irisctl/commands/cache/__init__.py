"""irisctl cache: the analysis cache on the hosts (via iris-service-admin), one subcommand per
module: stats, inspect, clear, backup, backups, restore."""

from __future__ import annotations

import click

from irisctl.commands.cache import backup, backups, clear, inspect, restore, stats
from irisctl.errors import EXIT_CODES_HELP


@click.group("cache", epilog=EXIT_CODES_HELP)
def command() -> None:
    """The analysis cache on the hosts (via iris-service-admin).

    \b
    Examples:
      irisctl cache stats
      irisctl cache inspect src/app.py
      irisctl cache clear --older-than 30d --yes
      irisctl cache backup
      irisctl cache backups
      irisctl cache restore --from 20260101T031500.000Z-iris-prod-1 --yes
    """


for module in (stats, inspect, clear, backup, backups, restore):
    command.add_command(module.command)
