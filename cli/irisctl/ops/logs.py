"""What ``irisctl logs`` reads: which files and units, and a snapshot through ``logs.yml``.

``playbooks/files/iris_logs.py`` runs on the host and prints one JSON record per line
(source, time, line); the play ships it with ``ansible.builtin.script``. Following the logs
live runs the same reader over each host's own connection (:mod:`irisctl.ops.follow`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from irisctl.ops.target import Target
from irisctl.paths import playbooks_dir

READER = playbooks_dir() / "files" / "iris_logs.py"

# What --unit names; values are templated with each host's variables (the service role's
# defaults, overridden by the inventory), like every path the playbooks use. logs.yml has
# only the service role's defaults, so nginx's files are named here as its role names them.
LOG_FILES = {
    "access": "{{ service_access_log }}",
    "error": "{{ service_error_log }}",
    "nginx-access": "/var/log/nginx/access.log",
    "nginx-error": "/var/log/nginx/error.log",
}
# By default: what the service itself wrote, its access and error lines merged in time order.
DEFAULT_FILES = ("access", "error")
JOURNAL_UNITS = {
    "service": ("{{ service_unit }}.service",),
    "socket": ("{{ service_unit }}.socket",),
    "nginx": ("nginx.service",),
    # the renewal's unit names differ between OS families (roles/certbot/vars)
    "certbot": ("certbot.service", "certbot.timer", "certbot-renew.service", "certbot-renew.timer"),
    "cloudwatch-agent": ("amazon-cloudwatch-agent.service",),
    "ssm-agent": ("amazon-ssm-agent.service",),
}
UNITS = (*JOURNAL_UNITS, *LOG_FILES)


@dataclass(frozen=True)
class LogQuery:
    """One logs request: a ``--unit`` (None: the service's own files) and its filters."""

    unit: str | None = None
    lines: int = 50
    since: datetime | None = None
    grep: str | None = None

    def reader_args(self, follow: bool = False) -> list[str]:
        """The reader's arguments, with ``{{ var }}`` templates the host's variables fill in."""
        if self.unit in JOURNAL_UNITS:
            args = [f"--unit={unit}" for unit in JOURNAL_UNITS[self.unit]]
        else:
            names = (self.unit,) if self.unit else DEFAULT_FILES
            args = [f"--file={name}={LOG_FILES[name]}" for name in names]
        args.append(f"--lines={self.lines}")
        if self.since is not None:
            args.append(f"--since={self.since.timestamp():.3f}")
        if self.grep:
            args.append(f"--grep={self.grep}")
        if follow:
            args.append("--follow")
        return args


def host_record(host: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A reader's record as irisctl prints it: ``{host, source, time, line}``."""
    return {"host": host, "source": raw["source"], "time": raw["time"], "line": raw["line"]}


def read_logs(target: Target, query: LogQuery) -> list[dict[str, Any]]:
    """The last ``query.lines`` records of each host, merged in time order (records without
    a time keep their place after the one before)."""
    reports = target.reports("logs", extravars={"iris_logs_args": query.reader_args()})
    records = [
        host_record(host, raw)
        for host, report in reports.items()
        for raw in parse_log_records(report.get("output") or "")
    ]
    return merge_log_records(records)


def parse_log_record(text: str) -> dict[str, Any] | None:
    """One JSON line of ``playbooks/files/iris_logs.py`` -> {source, time, line}, or None
    for anything else on its output (a terminal's stray text, an empty line)."""
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("line"), str):
        return None
    return {"source": str(raw.get("source") or "-"), "time": raw.get("time"), "line": raw["line"]}


def parse_log_records(output: str) -> list[dict[str, Any]]:
    """Every record in the reader's output, in the order written."""
    return [r for r in map(parse_log_record, output.splitlines()) if r is not None]


def merge_log_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of several hosts in time order (ISO 8601 UTC times sort as text); a record
    without a time keeps the time of the one before it on its host."""
    keyed = []
    last: dict[str, str] = {}
    for index, record in enumerate(records):
        moment = record.get("time") or last.get(record["host"], "")
        last[record["host"]] = moment
        keyed.append((moment, index, record))
    return [record for _moment, _index, record in sorted(keyed, key=lambda k: k[:2])]
