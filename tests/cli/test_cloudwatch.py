"""`irisctl logs --source cloudwatch` against a real moto server (boto3, no AWS)."""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

GROUP = "/iris/prod/gunicorn"


@pytest.fixture
def logs_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_LOGS", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    try:
        yield endpoint
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        server.stop()


def seed(endpoint: str, stream: str, messages: list[str]) -> None:
    client = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-2")
    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
        client.create_log_group(logGroupName=GROUP)
    client.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    now = int(time.time() * 1000)
    client.put_log_events(
        logGroupName=GROUP,
        logStreamName=stream,
        logEvents=[
            {"timestamp": now - 1000 * (len(messages) - i), "message": m}
            for i, m in enumerate(messages)
        ],
    )


def test_reads_last_lines_of_the_unit_stream(invoke, logs_endpoint) -> None:
    seed(logs_endpoint, "i-0abc/error", ["boot", "worker up", "ERROR model timeout", "done"])
    seed(logs_endpoint, "i-0abc/access", ["GET /api/iris/health 200"])
    result = invoke("logs", "--source", "cloudwatch", "--unit", "error", "--lines", "2")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("i-0abc/error ERROR model timeout")
    assert lines[1].endswith("i-0abc/error done")


def test_grep_and_stream_prefix_filter(invoke, logs_endpoint) -> None:
    seed(logs_endpoint, "i-0abc/access", ["GET / 200", "POST /api/iris/analyze 502"])
    seed(logs_endpoint, "i-0def/access", ["POST /api/iris/analyze 500"])
    result = invoke(
        "logs",
        "--source",
        "cloudwatch",
        "--unit",
        "access",
        "--grep",
        " 5[0-9][0-9]$",
        "--log-stream-prefix",
        "i-0abc",
    )
    assert result.exit_code == 0, result.stderr
    assert [line.split(" ", 2)[2] for line in result.stdout.splitlines()] == [
        "POST /api/iris/analyze 502"
    ]


def test_missing_log_group_is_one_line_exit_3(invoke, logs_endpoint) -> None:
    result = invoke("logs", "--source", "cloudwatch", "--log-group", "/iris/nope")
    assert result.exit_code == 3
    assert result.stderr.strip() == "error: CloudWatch Logs: log group /iris/nope does not exist"
