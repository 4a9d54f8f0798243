"""irisctl keys: the named client keys on the hosts, one subcommand per module: list, add,
revoke, rotate."""

from __future__ import annotations

import click

from irisctl.commands.keys import add, list, revoke, rotate
from irisctl.errors import EXIT_CODES_HELP


@click.group("keys", epilog=EXIT_CODES_HELP)
def command() -> None:
    """Named client API keys: each with its own rate limit and daily model budget.

    Hosts keep only each key's SHA-256; a new key is printed once, here, and nowhere else.
    IRIS_API_KEY (service_api_key in the inventory) is the key named `default`.

    \b
    Examples:
      irisctl keys list
      irisctl keys add alice --rate-per-minute 60 --daily-budget-usd 5
      irisctl keys rotate alice
      irisctl keys revoke alice
    """


for module in (list, add, revoke, rotate):
    command.add_command(module.command)
