"""irisctl cache stats | inspect | clear."""

from __future__ import annotations

import re
from pathlib import Path

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP, EXIT_FAILED, ConfigError
from irisctl.humanize import parse_duration
from irisctl.ops.cache import cache_clear, cache_inspect, cache_stats

_KEY_RE = re.compile(r"^[0-9a-fA-F]{64}$")


@click.group("cache", epilog=EXIT_CODES_HELP)
def command() -> None:
    """The analysis cache on the hosts (via iris-service-admin).

    \b
    Examples:
      irisctl cache stats
      irisctl cache inspect src/app.py
      irisctl cache clear --older-than 30d --yes
    """


@command.command("stats", epilog=EXIT_CODES_HELP)
@json_option
@pass_options
def stats(opts: Options, as_json: bool) -> None:
    """Entries, bytes on disk, hit rate, model calls, tokens, cost spent and saved.

    \b
    Examples:
      irisctl cache stats
      irisctl cache stats --json | jq '.hosts[].hit_rate'
    """
    with render.working("reading cache stats"):
        data = cache_stats(opts.target(progress=False))
    if as_json:
        render.emit_json(data)
    else:
        render.cache_stats_table(data)


@command.command("inspect", epilog=EXIT_CODES_HELP)
@click.argument("key_or_file")
@click.option("--language", help="Language of FILE when its extension does not tell.")
@json_option
@pass_options
@click.pass_context
def inspect(
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


def _age(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@command.command("clear", epilog=EXIT_CODES_HELP)
@click.option(
    "--older-than", metavar="AGE", callback=_age, help="Only entries older than 7d, 12h, 30m…"
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_options
def clear(opts: Options, older_than: int | None, yes: bool, as_json: bool) -> None:
    """Remove cached analyses (all, or only those older than AGE); asks first.

    \b
    Examples:
      irisctl cache clear
      irisctl cache clear --older-than 30d --yes
    """
    target = opts.target(progress=False)
    if not yes:
        what = f"entries older than {older_than}s" if older_than is not None else "ALL entries"
        click.confirm(f"Remove {what} from the cache on {target.limit or 'all hosts'}?", abort=True)
    with render.working("clearing the cache"):
        data = cache_clear(target, older_than=older_than)
    if as_json:
        render.emit_json(data)
    else:
        for host in data["hosts"]:
            render.plain(f"{host['host']}: removed {host['removed']} entries")
