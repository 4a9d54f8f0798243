"""irisctl logs."""

from __future__ import annotations

import click

from irisctl import cloudwatch, ops, render
from irisctl.context import Options, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.reports import parse_since

UNITS = ("service", "nginx", "access", "error", "nginx-access", "nginx-error")


def _since(value: str | None) -> str | None:
    """--since as an absolute UTC time the journal understands on any host clock zone."""
    if not value:
        return None
    try:
        return parse_since(value).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


@click.command("logs", epilog=EXIT_CODES_HELP)
@click.option(
    "--unit",
    type=click.Choice(UNITS),
    default="service",
    show_default=True,
    help="service/nginx: the systemd journal; access/error: /var/log/iris/*.log; "
    "nginx-access/nginx-error: /var/log/nginx/*.log.",
)
@click.option("-n", "--lines", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--since", metavar="AGE|TIME", help="Only newer lines: 15m, 2h, 1d or ISO 8601.")
@click.option("--grep", metavar="REGEX", help="Only lines matching this extended regex.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
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
@pass_options
def command(
    opts: Options,
    unit: str,
    lines: int,
    since: str | None,
    grep: str | None,
    follow: bool,
    source: str,
    log_group: str | None,
    environment: str,
    log_stream_prefix: str | None,
) -> None:
    """Show the service or nginx logs from each host (or from CloudWatch Logs).

    --since applies to the journal units (service, nginx) and to CloudWatch.

    \b
    Examples:
      irisctl logs --lines 100
      irisctl logs --unit access --grep ' 5[0-9][0-9] '
      irisctl logs --since 30m --follow
      AWS_REGION=us-east-2 irisctl logs --source cloudwatch --log-stream-prefix i-0abc --since 2h
    """
    if source == "cloudwatch":
        default_group, stream_suffix = cloudwatch.log_source(unit, environment)
        log_group = log_group or default_group
        kwargs = {
            "stream_suffix": stream_suffix,
            "since": parse_since(since) if since else None,
            "lines": lines,
            "grep": grep,
            "stream_prefix": log_stream_prefix,
        }
        events = (
            cloudwatch.follow_events(log_group, **kwargs)  # type: ignore[arg-type]
            if follow
            else cloudwatch.read_events(log_group, **kwargs)  # type: ignore[arg-type]
        )
        for event in events:
            render.plain(event.line())
        return
    target = opts.target(progress=False)
    options = {"unit": unit, "lines": lines, "since": _since(since), "grep": grep}
    if follow:
        for host, line in ops.follow_logs(target, **options):  # type: ignore[arg-type]
            render.plain(f"{host} | {line}")
        return
    with render.working("reading logs"):
        data = ops.logs(target, **options)  # type: ignore[arg-type]
    prefix = len(data) > 1
    for host, result in data.items():
        for line in result["lines"]:
            render.plain(f"{host} | {line}" if prefix else line)
