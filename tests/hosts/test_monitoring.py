"""Monitoring on a real host (the edge host, read and lightly used, never reconfigured):
the host metrics timer's EMF lines land where the CloudWatch agent would read them and are
schema-valid; `irisctl top --once --json` after known traffic agrees with `cache stats`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from host_helpers import EDGE_HOST, Sandbox, https
from irisctl.paths import project_root
from irisctl.sandbox import hosts
from irisctl.sandbox.hosts import Host

IRISCTL = str(Path(sys.executable).parent / "irisctl")
OPERATOR_ENV = ("IRISCTL_INVENTORY", "IRISCTL_CONFIG", "IRISCTL_CA_BUNDLE", "IRISCTL_DEBUG")
# inventory/sandbox/group_vars/iris.yml: IRIS_EMF_FILE (no agent on Debian; its listener on EC2)
EMF_FILE = "/var/log/iris/emf.log"
SCHEMA = project_root().parent / "shared" / "schemas" / "cloudwatch-emf-spec-schema.json"


def ssh(host: Host, command: str) -> str:
    argv = [*hosts.ssh_command(host, "root"), command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def irisctl(box: Sandbox, host: Host, home: Path, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENV}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env.update(XDG_CACHE_HOME=str(home / ".cache"), IRISCTL_INVENTORY=str(box.inventory))
    argv = [IRISCTL, "--limit", host.name, *args, "--json"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def host_metric_events(host: Host) -> list[dict[str, Any]]:
    lines = ssh(host, f'grep -h \'"event":"host_metrics"\' {EMF_FILE} || true').splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_the_timer_writes_schema_valid_host_metrics_where_the_agent_reads(
    converged: Sandbox,
) -> None:
    host = converged.info.hosts[EDGE_HOST]
    assert ssh(host, "systemctl is-enabled iris-host-metrics.timer") == "enabled"
    assert ssh(host, "systemctl is-active iris-host-metrics.timer") == "active"
    before = len(host_metric_events(host))
    ssh(host, "systemctl start iris-host-metrics.service")  # a oneshot: returns when done
    events = host_metric_events(host)
    # at least one new event: the minutely timer may add its own run meanwhile (or this start
    # may join the run it already began), so the count cannot be exact
    assert len(events) > before
    event = events[-1]
    assert event["HealthCheckOk"] == 1
    assert event["CertificateDaysLeft"] > 14  # pebble's fresh certificate
    assert 0 < event["DiskUsedPercent"] < 100
    assert event["Environment"] == "prod"
    # the service can still append to the file the timer may have created
    assert ssh(host, f"stat -c %U {EMF_FILE}") == "iris"
    if not SCHEMA.is_file():
        pytest.skip(f"reference schema {SCHEMA} is absent (../shared is not checked out here)")
    from jsonschema import Draft7Validator

    errors = list(Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(event))
    assert errors == []


def test_top_once_json_counts_known_traffic_as_cache_stats_does(
    converged: Sandbox, tmp_path: Path
) -> None:
    box, host = converged, converged.info.hosts[EDGE_HOST]
    before = irisctl(box, host, tmp_path, "cache", "stats")["hosts"][0]
    tag = uuid.uuid4().hex[:8]
    sources = [f"def top_{tag}_{n}(value):\n    return value + {n}\n" for n in range(3)]
    started = time.monotonic()
    for source in [*sources, sources[0], sources[1]]:  # 3 misses, then 2 hits
        body = {"filename": "t.py", "language": "python", "source_code": source}
        answer = https(host, "/api/iris/analyze", box.pebble_roots, method="POST", body=body)
        assert answer.status == 200, answer.body
    data = irisctl(box, host, tmp_path, "top", "--once")
    seconds = time.monotonic() - started
    after = irisctl(box, host, tmp_path, "cache", "stats")["hosts"][0]
    (row,) = data["hosts"]
    assert after["hits"] - before["hits"] == 2 and after["misses"] - before["misses"] == 3
    for name in ("hits", "misses", "hit_rate", "model_calls", "cost_spent_usd"):
        assert row["cache"][name] == after[name], name
    assert row["model"]["spent_today_usd"] == after["budget"]["spent_today_usd"]
    assert row["latency_ms"]["samples"] >= 5 and row["latency_ms"]["p99"] is not None
    assert row["requests_per_second"] >= 5 / row["window_seconds"]
    assert row["in_flight"] is not None and row["in_flight"] >= 0
    status = irisctl(box, host, tmp_path, "status")["hosts"][0]
    assert row["release"] == status["version"]
    assert row["certificate_days_left"] == status["certificate"]["days_left"]
    assert data["fleet"]["hosts"] == 1 and data["fleet"]["cache"]["hits"] == row["cache"]["hits"]
    assert seconds < 120
