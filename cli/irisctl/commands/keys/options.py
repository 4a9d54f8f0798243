"""Arguments the keys subcommands share: the key name and the limits, checked as given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from irisctl.ops.keys import KeyArgumentError, check_name, parse_budget, parse_rate


def _checked(parse: Callable[[str], Any]) -> Callable[..., Any]:
    def callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except KeyArgumentError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


name_argument = click.argument("name", callback=_checked(check_name))
rate_option = click.option(
    "--rate-per-minute",
    metavar="N",
    callback=_checked(parse_rate),
    help="Requests per minute for this key (0: no limit; default: the service's).",
)
budget_option = click.option(
    "--daily-budget-usd",
    metavar="USD",
    callback=_checked(parse_budget),
    help="Model spend per UTC day for this key (default: only the global budget).",
)
