"""irisctl cache inspect KEY_OR_FILE."""

from __future__ import annotations

import re
from pathlib import Path

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP, EXIT_FAILED, ConfigError
from irisctl.ops.cache import cache_inspect

_KEY_RE = re.compile(r"^[0-9a-fA-F]{64}$")


@click.command("inspect", epilog=EXIT_CODES_HELP)
@click.argument("key_or_file")
@click.option("--language", help="Language of FILE when its extension does not tell.")
@json_option
@pass_options
@click.pass_context
def command(
    ctx: click.Context, opts: Options, key_or_file: str, language: str | None, as_json: bool
) -> None:
    """The cached analysis for a cache KEY, or for a local source FILE.

    A FILE is copied to the host and hashed there exactly the way the service hashes it.
    Exit 1 when there is no cached analysis.

    \b
    Examples:
      irisctl cache inspect 3f2a...c9 (64 hex characters)
      irisctl cache inspect service/iris_service/app.py --json
    """
    path = Path(key_or_file)
    if path.is_file():
        data = cache_inspect(opts.target(progress=False), file=path, language=language)
    elif _KEY_RE.match(key_or_file):
        data = cache_inspect(opts.target(progress=False), key=key_or_file.lower())
    else:
        raise ConfigError(f"{key_or_file} is neither a local file nor a cache key (64 hex)")
    if as_json:
        render.emit_json(data)
    else:
        for host in data["hosts"]:
            render.out.rule(f"{host['host']}")
            if host["found"]:
                render.out.print_json(data=host)
            else:
                render.plain(f"no cached analysis for key {host.get('key', key_or_file)}")
    if not all(host["found"] for host in data["hosts"]):
        ctx.exit(EXIT_FAILED)
