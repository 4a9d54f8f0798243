"""irisctl aws up."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from irisctl import render
from irisctl.commands.deploy import release_options
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.aws import up


def _ask_secret(variable: str) -> str:
    # Hidden input: the key is neither echoed nor kept anywhere but this process's environment.
    return str(click.prompt(f"OpenAI API key (not set in {variable})", hide_input=True, err=True))


@click.command("up", epilog=EXIT_CODES_HELP)
@click.option("--resources-only", is_flag=True, help="Stop after the AWS resources.")
@click.option(
    "--skip-dns-check",
    is_flag=True,
    help="Converge even when the name does not resolve to the Elastic IP yet.",
)
@release_options
@json_option
@pass_options
def command(
    opts: Options,
    resources_only: bool,
    skip_dns_check: bool,
    version: str | None,
    from_path: Path | None,
    check: bool,
    as_json: bool,
) -> None:
    """Create or update the deployment, converge and deploy the instance, check its health.

    Idempotent: a second `up` changes nothing and says so; a half-finished one is finished by
    running it again. A new instance starts with the latest cache backup restored. The OpenAI
    key for a new secret comes from $OPENAI_API_KEY, else it is asked for (never echoed).
    --check is `aws plan`.

    \b
    Examples:
      irisctl -i inventory/production aws up
      irisctl -i inventory/production aws up --resources-only --json
    """
    if check:
        from irisctl.commands.aws.plan import command as plan_command

        click.get_current_context().invoke(plan_command, as_json=as_json)
        return
    interactive = sys.stdin.isatty() and not as_json
    data = up(
        opts.target(),
        resources_only=resources_only,
        skip_dns_check=skip_dns_check,
        version=version,
        from_path=from_path,
        ask_secret=_ask_secret if interactive else None,
        on_step=render.step,
    )
    if as_json:
        render.emit_json(data)
        return
    render.aws_resources_table(data, "up")
    dns = data.get("dns")
    if dns and not dns["managed_by_route53"] and not dns["points_at_elastic_ip"]:
        render.plain(f"set this record at the registrar: {dns['record']}")
    render.aws_endpoints(data.get("endpoints"))
    count = data["changed"]
    render.plain(f"{count} change(s)" if count else "no change: everything was up to date")
    if not resources_only:
        render.plain(f"healthy, serving {data['converge']['version']}")
