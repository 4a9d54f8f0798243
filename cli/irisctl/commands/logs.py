"""irisctl logs."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from irisctl import cloudwatch, render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.humanize import parse_since
from irisctl.ops.follow import follow_logs, host_streams
from irisctl.ops.logs import JOURNAL_UNITS, LOG_FILES, UNITS, LogQuery
from irisctl.ops.logs import read_logs as read_host_logs

EXIT_INTERRUPTED = 128 + signal.SIGINT  # and SIGTERM/SIGHUP: 128 + their number

FOLLOW_EXIT_HELP = """\b
--follow runs until stopped: Ctrl-C (SIGINT) exits 130, SIGTERM 143, SIGHUP 129,
within a second, and nothing it started on this machine keeps running."""


class _Stopped(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the follow like Ctrl-C does (SIGINT is KeyboardInterrupt)."""

    def stop(signum: int, _frame: Any) -> None:
        raise _Stopped(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_now(code: int) -> NoReturn:
    """Leave at once when stopped: every reader is already killed, and the interpreter's
    teardown (Ansible's modules are loaded) costs 0.3 s of CPU, over a second on a busy host."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def _cloudwatch(
    unit: str | None,
    environment: str,
    log_group: str | None,
    log_stream_prefix: str | None,
    query: LogQuery,
    follow: bool,
    as_json: bool,
) -> None:
    if unit is None:  # the service's own files: both streams of the gunicorn group
        default_group, stream_suffix = f"/iris/{environment}/gunicorn", None
    elif unit in cloudwatch.UNIT_SOURCES:
        default_group, stream_suffix = cloudwatch.log_source(unit, environment)
    else:
        raise click.BadParameter(f"{unit} is not shipped to CloudWatch Logs", param_hint="--unit")
    kwargs = {
        "stream_suffix": stream_suffix,
        "since": query.since,
        "lines": query.lines,
        "grep": query.grep,
        "stream_prefix": log_stream_prefix,
    }
    group = log_group or default_group
    events = (
        cloudwatch.follow_events(group, **kwargs)  # type: ignore[arg-type]
        if follow
        else cloudwatch.read_events(group, **kwargs)  # type: ignore[arg-type]
    )
    for event in events:
        if as_json:
            instance, _, source = event.stream.partition("/")
            moment = datetime.fromtimestamp(event.timestamp / 1000, tz=UTC)
            render.json_line(
                {
                    "host": instance,
                    "source": source or event.stream,
                    "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "line": event.message.rstrip("\n"),
                }
            )
        else:
            render.plain(event.line())


@click.command("logs", epilog=f"{FOLLOW_EXIT_HELP}\n\n{EXIT_CODES_HELP}")
@click.option(
    "--unit",
    type=click.Choice(UNITS),
    default=None,
    help="A unit's journal ("
    + ", ".join(JOURNAL_UNITS)
    + "; service is iris-backend.service) or one log file ("
    + ", ".join(LOG_FILES)
    + ").  [default: the service's access and error logs, merged in time order]",
)
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="The last N records (a record is a line and its continuation lines).",
)
@click.option("--since", metavar="AGE|TIME", help="Only newer records: 15m, 2h, 1d or ISO 8601.")
@click.option("--grep", metavar="REGEX", help="Only records matching this regular expression.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records until stopped.")
@click.option(
    "--source",
    type=click.Choice(["host", "cloudwatch"]),
    default="host",
    show_default=True,
    help="cloudwatch: read CloudWatch Logs with boto3 (for an instance that is gone).",
)
@click.option(
    "--log-group",
    metavar="NAME",
    help="CloudWatch log group (default: the agent's group for --unit, "
    "/iris/ENV/gunicorn or /iris/ENV/nginx).",
)
@click.option(
    "--environment",
    default=cloudwatch.DEFAULT_ENVIRONMENT,
    show_default=True,
    help="ENV in the CloudWatch log group names.",
)
@click.option(
    "--log-stream-prefix",
    metavar="PREFIX",
    help="Only CloudWatch streams starting with this (e.g. an instance id).",
)
@json_option
@pass_options
def command(
    opts: Options,
    unit: str | None,
    lines: int,
    since: str | None,
    grep: str | None,
    follow: bool,
    source: str,
    log_group: str | None,
    environment: str,
    log_stream_prefix: str | None,
    as_json: bool,
) -> None:
    """Show what the service logged on each host, or a unit's journal (or CloudWatch Logs).

    By default: the service's own access and error lines (/var/log/iris/*.log, the files the
    CloudWatch agent ships), merged in time order and tagged with their source; a traceback
    stays with the line it belongs to. --since, --grep and --lines apply to the journal too.
    --json prints JSON Lines, also with --follow: one object per record,
    {"host", "source", "time" (ISO 8601 UTC, or null), "line"}.

    \b
    Examples:
      irisctl logs --lines 100
      irisctl logs --grep ' 5[0-9][0-9] ' --since 1h
      irisctl logs --unit service --since 30m --follow
      irisctl logs --follow --json | jq -r 'select(.source == "error") | .line'
      AWS_REGION=us-east-2 irisctl logs --source cloudwatch --log-stream-prefix i-0abc --since 2h
    """
    query = LogQuery(unit=unit, lines=lines, since=_since(since), grep=grep)
    try:
        with _stop_on_signals():
            if source == "cloudwatch":
                _cloudwatch(unit, environment, log_group, log_stream_prefix, query, follow, as_json)
                return
            if follow:
                resolved = opts.inventory()
                streams = host_streams(resolved.path, opts.limit, query)
                show_host = len(streams) > 1
                follow_logs(
                    streams,
                    render.json_line
                    if as_json
                    else lambda record: render.log_record(record, show_host),
                )
                return
            with render.working("reading logs"):
                records = read_host_logs(opts.target(progress=False), query)
    except KeyboardInterrupt:
        _exit_now(EXIT_INTERRUPTED)
    except _Stopped as stopped:
        _exit_now(stopped.code)
    except BrokenPipeError:  # `irisctl logs -f | head`: whoever read our output is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _exit_now(0)
    show_host = len({r["host"] for r in records}) > 1
    for record in records:
        if as_json:
            render.json_line(record)
        else:
            render.log_record(record, show_host)
