"""irisctl aws status."""

from __future__ import annotations

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.aws import status


@click.command("status", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def command(opts: Options, as_json: bool) -> None:
    """Which of the deployment's resources exist, whether the name resolves to its IP, and
    the URL of its CloudWatch dashboard.

    \b
    Examples:
      irisctl -i inventory/production aws status
      irisctl -i inventory/production aws status --json | jq '.dns'
    """
    with render.working("reading the deployment"):
        data = status(opts.target(progress=False))
    if as_json:
        render.emit_json(data)
        return
    render.aws_resources_table(data, "status")
    render.aws_endpoints(data.get("endpoints"))
    if data.get("dashboard_url"):
        render.plain(f"dashboard: {data['dashboard_url']}")
    dns = data.get("dns")
    if dns:
        if dns["points_at_elastic_ip"]:
            render.plain(f"{dns['name']} resolves to the Elastic IP {dns['elastic_ip']}")
        else:
            found = ", ".join(dns["resolves_to"]) or "nothing"
            render.plain(
                f"{dns['name']} resolves to {found}, not the Elastic IP: set `{dns['record']}`"
            )
