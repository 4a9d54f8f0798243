"""irisctl provision."""

from __future__ import annotations

from pathlib import Path

import click

from irisctl import render
from irisctl.commands.deploy import release_options, show_result
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.deploy import provision


@click.command("provision", epilog=EXIT_CODES_HELP)
@release_options
@json_option
@pass_options
def command(
    opts: Options, version: str | None, from_path: Path | None, check: bool, as_json: bool
) -> None:
    """Run the full site.yml: a bare host becomes an IRIS host serving a release.

    Installs the service, nginx with TLS (certbot), the CloudWatch and SSM agents, and
    deploys the release built from the source tree (or --version / --from).

    \b
    Examples:
      irisctl sandbox up && irisctl provision
      irisctl -i inventory/production --limit iris-2 provision --check
    """
    data = provision(
        opts.target(), version=version, from_path=from_path, check=check, on_step=render.step
    )
    show_result(data, as_json, f"provisioned with {data.get('version')}")
