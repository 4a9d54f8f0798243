"""The ``irisctl`` root command: global options, command registration, error handling.

Every operator mistake or failed operation ends as one line on stderr and a documented exit
code (see :mod:`irisctl.errors`); tracebacks are only for bugs (``IRISCTL_DEBUG=1`` shows them).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from irisctl import __version__, render
from irisctl.context import CA_BUNDLE_ENV, JSON_REQUESTED, Options
from irisctl.errors import EXIT_CODES_HELP, EXIT_FAILED, IrisctlError


class IrisctlGroup(click.Group):
    """Turns IrisctlError into one line + exit code; keeps tracebacks for real bugs."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IrisctlError as exc:
            if ctx.meta.get(JSON_REQUESTED) and not ctx.meta.get(render.JSON_EMITTED):
                # One line: it may end a stream of JSON Lines (logs --follow --json).
                click.echo(json.dumps(exc.as_json(), default=str))
            render.error_line(str(exc), exc.details)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            render.error_line("interrupted")
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("IRISCTL_DEBUG"):
                raise
            render.error_line(
                f"internal error: {type(exc).__name__}: {exc} (IRISCTL_DEBUG=1 shows the traceback)"
            )
            ctx.exit(EXIT_FAILED)


HELP = f"""irisctl: deploy and operate the IRIS backend.

\b
Examples:
  irisctl sandbox up                  # a local systemd host, no AWS needed
  irisctl provision                   # the full site.yml on a bare host
  irisctl deploy --version 1.4.0      # build, ship, health-gated with rollback
  irisctl -i inventory/production status --json
  irisctl logs --unit service --lines 100 --grep ERROR
  irisctl health && echo healthy

\b
Inventory: -i PATH, else $IRISCTL_INVENTORY, else `inventory = "..."` in
irisctl.toml (./, the project root, or ~/.config/irisctl/config.toml),
else the sandbox (inventory/sandbox/hosts.ini).

\b
Shell completion (bash; zsh and fish likewise):
  eval "$(_IRISCTL_COMPLETE=bash_source irisctl)"

{EXIT_CODES_HELP}
"""


@click.group(cls=IrisctlGroup, help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-i",
    "--inventory",
    "inventory",
    metavar="PATH",
    help="Ansible inventory (file or directory).",
)
@click.option("--limit", metavar="HOST", help="Only act on these hosts (Ansible --limit pattern).")
@click.option("-v", "--verbose", "verbosity", count=True, help="Show Ansible's raw output (-vv…).")
@click.option(
    "--ca-bundle",
    envvar=CA_BUNDLE_ENV,
    metavar="PEM",
    help=f"CA bundle to verify the public HTTPS endpoint (env {CA_BUNDLE_ENV}).",
)
@click.version_option(__version__, "--version", prog_name="irisctl")
@click.pass_context
def cli(
    ctx: click.Context,
    inventory: str | None,
    limit: str | None,
    verbosity: int,
    ca_bundle: str | None,
) -> None:
    ctx.obj = Options(inventory, limit, verbosity, ca_bundle)


def _register() -> None:
    from irisctl.commands import (
        aws,
        cache,
        deploy,
        health,
        keys,
        logs,
        provision,
        releases,
        restart,
        rollback,
        sandbox,
        status,
        top,
        unlock,
    )

    for module in (
        aws,
        sandbox,
        provision,
        deploy,
        rollback,
        releases,
        restart,
        status,
        logs,
        cache,
        keys,
        top,
        health,
        unlock,
    ):
        cli.add_command(module.command)


_register()


def main() -> None:  # pragma: no cover - the console script calls `cli` directly
    cli(prog_name="irisctl")
    sys.exit(0)
