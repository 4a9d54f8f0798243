"""irisctl health."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP, EXIT_FAILED
from irisctl.ops.reports import health


@click.command("health", epilog=EXIT_CODES_HELP)
@json_option
@click.option(
    "--public/--no-public",
    default=True,
    show_default=True,
    help="Also call https://DOMAIN/api/iris/health from here, verifying TLS.",
)
@click.option(
    "--min-cert-days",
    type=click.IntRange(min=0),
    default=14,
    show_default=True,
    help="Fewer days of certificate validity left counts as unhealthy.",
)
@pass_options
@click.pass_context
def command(
    ctx: click.Context, opts: Options, as_json: bool, public: bool, min_cert_days: int
) -> None:
    """Public HTTPS endpoint plus deep checks; exit 0 only when every host is healthy.

    Deep checks on each host: iris-backend and nginx running, the local health endpoint,
    certificate days left, disk free on /var/iris, cache dir writable by the service user.

    \b
    Examples:
      irisctl health
      irisctl health --json
      irisctl --ca-bundle pebble-root.pem health
      irisctl health || irisctl logs --lines 50
    """
    with render.working("checking health"):
        data = health(opts.target(progress=False), public=public, min_cert_days=min_cert_days)
    if as_json:
        render.emit_json(data)
    else:
        render.health_table(data)
    if not data["healthy"]:
        failing = [
            f"{host['host']}: {check['name']}"
            for host in data["hosts"]
            for check in host["checks"]
            if not check["ok"]
        ]
        render.error_line("unhealthy: " + ", ".join(failing))
        ctx.exit(EXIT_FAILED)
