"""Read the service's logs from CloudWatch Logs, for hosts that are gone.

``AWS_ENDPOINT_URL_LOGS`` (or boto3's own ``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``) points it at
another endpoint, e.g. a moto server in the tests; ``AWS_REGION`` picks the region.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from irisctl.errors import ConfigError, IrisctlError

DEFAULT_REGION = "us-east-2"
DEFAULT_ENVIRONMENT = "prod"
# irisctl --unit -> (log group under /iris/<env>/, stream name suffix), as the cloudwatch_agent
# role ships them: streams are named "<instance id>/access" and "<instance id>/error".
UNIT_SOURCES = {
    "service": ("gunicorn", "error"),
    "access": ("gunicorn", "access"),
    "error": ("gunicorn", "error"),
    "nginx": ("nginx", "error"),
    "nginx-access": ("nginx", "access"),
    "nginx-error": ("nginx", "error"),
}


def log_source(unit: str, environment: str = DEFAULT_ENVIRONMENT) -> tuple[str, str]:
    """The log group and stream suffix the CloudWatch agent uses for ``unit``."""
    group, stream = UNIT_SOURCES[unit]
    return f"/iris/{environment}/{group}", f"/{stream}"


@dataclass(frozen=True)
class LogEvent:
    timestamp: int  # ms since the epoch
    stream: str
    message: str

    def line(self) -> str:
        moment = datetime.fromtimestamp(self.timestamp / 1000, UTC).isoformat(timespec="seconds")
        return f"{moment} {self.stream} {self.message.rstrip()}"


def _client() -> Any:
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    # boto3 itself reads AWS_ENDPOINT_URL_CLOUDWATCH_LOGS; the shorter name is ours.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_LOGS") or None
    return boto3.client("logs", region_name=region, endpoint_url=endpoint)


def _filter(
    log_group: str,
    start_ms: int | None,
    stream_prefix: str | None,
    grep: str | None,
    stream_suffix: str | None = None,
) -> list[LogEvent]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    pattern = re.compile(grep) if grep else None
    kwargs: dict[str, object] = {"logGroupName": log_group, "interleaved": True}
    if start_ms is not None:
        kwargs["startTime"] = start_ms
    if stream_prefix:
        kwargs["logStreamNamePrefix"] = stream_prefix
    events: list[LogEvent] = []
    try:
        paginator = _client().get_paginator("filter_log_events")
        for page in paginator.paginate(**kwargs):
            for raw in page.get("events", []):
                event = LogEvent(raw["timestamp"], raw.get("logStreamName", ""), raw["message"])
                # (the prefix again here: not every endpoint applies logStreamNamePrefix)
                if stream_prefix and not event.stream.startswith(stream_prefix):
                    continue
                if stream_suffix and not event.stream.endswith(stream_suffix):
                    continue
                if pattern is None or pattern.search(event.message):
                    events.append(event)
    except NoCredentialsError as exc:
        raise ConfigError(f"CloudWatch Logs: no AWS credentials ({exc})") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ResourceNotFoundException":
            raise ConfigError(f"CloudWatch Logs: log group {log_group} does not exist") from exc
        raise IrisctlError(f"CloudWatch Logs: {error.get('Message') or exc}") from exc
    except BotoCoreError as exc:
        raise IrisctlError(f"CloudWatch Logs: {exc}") from exc
    events.sort(key=lambda e: e.timestamp)
    return events


def read_events(
    log_group: str,
    *,
    since: datetime | None = None,
    lines: int = 50,
    grep: str | None = None,
    stream_prefix: str | None = None,
    stream_suffix: str | None = None,
) -> list[LogEvent]:
    """The last ``lines`` events of ``log_group`` (after ``since``), matching ``grep``."""
    start = int(since.timestamp() * 1000) if since else None
    events = _filter(log_group, start, stream_prefix, grep, stream_suffix)
    return events[-lines:] if lines else []


def follow_events(
    log_group: str,
    *,
    since: datetime | None = None,
    lines: int = 50,
    grep: str | None = None,
    stream_prefix: str | None = None,
    stream_suffix: str | None = None,
    interval: float = 2.0,
) -> Iterator[LogEvent]:
    """The last ``lines`` events, then new ones as they arrive (until interrupted)."""
    seen: set[tuple[int, str, str]] = set()
    backlog = read_events(
        log_group,
        since=since,
        lines=lines,
        grep=grep,
        stream_prefix=stream_prefix,
        stream_suffix=stream_suffix,
    )
    start = backlog[-1].timestamp if backlog else int(time.time() * 1000)
    for event in backlog:
        seen.add((event.timestamp, event.stream, event.message))
        yield event
    while True:
        time.sleep(interval)
        for event in _filter(log_group, start, stream_prefix, grep, stream_suffix):
            key = (event.timestamp, event.stream, event.message)
            if key not in seen:
                seen.add(key)
                start = max(start, event.timestamp)
                yield event
