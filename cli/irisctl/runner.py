"""Run one playbook with ansible-runner and turn its event stream into typed results.

Everything irisctl does on a host goes through :func:`run_playbook`: progress comes from the
events as they arrive, structured data from the ``iris_report`` variable that the read-only
playbooks print with ``ansible.builtin.debug`` as their last task, and failures become typed
errors (unreachable, SSH refused, deploy locked, play failed) with the task and host named.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irisctl.errors import (
    ConfigError,
    DeployLockedError,
    HostUnreachableError,
    IrisctlError,
    PlayFailedError,
)
from irisctl.paths import playbooks_dir, project_root

REPORT_VAR = "iris_report"
_REFUSED_RE = re.compile(r"connection refused|permission denied \(publickey", re.IGNORECASE)


@dataclass(frozen=True)
class PlayEvent:
    """One step of a running play, as progress renderers see it."""

    kind: str  # play, task, ok, changed, failed, skipped, unreachable, ignored, raw
    elapsed: float
    task: str = ""
    host: str = ""
    message: str = ""
    stdout: str = ""


@dataclass(frozen=True)
class TaskFailure:
    host: str
    task: str
    message: str
    details: list[str] = field(default_factory=list)
    unreachable: bool = False


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0


@dataclass
class PlayResult:
    playbook: str
    rc: int
    status: str
    duration: float
    hosts: dict[str, HostStats] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)
    failures: list[TaskFailure] = field(default_factory=list)
    changed_tasks: list[tuple[str, str, str]] = field(default_factory=list)  # host, task, diff
    no_hosts_matched: bool = False
    output_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures


EventCallback = Callable[[PlayEvent], None]


def _lines(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [line for item in value for line in _lines(item)]
    return [line for line in str(value).splitlines() if line.strip()]


def failure_message(res: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The one-line reason of a failed task result, plus any further lines worth showing."""
    msg_lines = _lines(res.get("msg"))
    stderr_lines = _lines(res.get("stderr"))
    if not msg_lines and res.get("results"):  # a loop: the first failed item says why
        for item in res["results"]:
            if isinstance(item, Mapping) and item.get("failed"):
                return failure_message(item)
    if not msg_lines:
        msg_lines = stderr_lines or _lines(res.get("stdout")) or ["task failed (no message)"]
        stderr_lines = []
    message = msg_lines[0]
    if message.endswith("lines received:") and len(msg_lines) > 1:
        # Mitogen (plugins/strategy) puts its own words first, then what ssh said: say that.
        message, msg_lines = msg_lines[-1], msg_lines[:-1]
    if message == "non-zero return code" and stderr_lines:
        message = f"{message} {res.get('rc', '')}: {stderr_lines[-1]}".replace("  ", " ")
        stderr_lines = stderr_lines[:-1]
    return message, msg_lines[1:] + stderr_lines[-10:]


class _Collector:
    """Folds ansible-runner events into a PlayResult, forwarding progress as PlayEvents."""

    def __init__(self, playbook: str, on_event: EventCallback | None, raw: bool) -> None:
        self.result = PlayResult(playbook=playbook, rc=-1, status="", duration=0.0)
        self.started = time.monotonic()
        self.on_event = on_event
        self.raw = raw
        self._failed: dict[str, TaskFailure] = {}
        self._tail: list[str] = []

    def _emit(self, kind: str, **kwargs: str) -> None:
        if self.on_event is not None:
            self.on_event(PlayEvent(kind=kind, elapsed=time.monotonic() - self.started, **kwargs))

    def __call__(self, event: dict[str, Any]) -> bool:
        name = event.get("event", "")
        data = event.get("event_data") or {}
        stdout = event.get("stdout") or ""
        if stdout:
            self._tail = (self._tail + stdout.splitlines())[-20:]
        if self.raw and stdout:
            self._emit("raw", stdout=stdout)
        host = data.get("host", "")
        task = data.get("task", "")
        res = data.get("res") or {}
        if name == "playbook_on_play_start":
            self._emit("play", task=data.get("play", ""))
        elif name == "playbook_on_task_start":
            self._emit("task", task=task)
        elif name == "playbook_on_no_hosts_matched":
            self.result.no_hosts_matched = True
        elif name == "runner_on_ok":
            if REPORT_VAR in res:
                self.result.reports[host] = res[REPORT_VAR]
            changed = bool(res.get("changed"))
            if changed:
                diff = stdout if res.get("diff") else ""
                self.result.changed_tasks.append((host, task, diff))
            self._emit("changed" if changed else "ok", task=task, host=host, stdout=stdout)
        elif name == "runner_on_skipped":
            self._emit("skipped", task=task, host=host)
        elif name == "runner_on_failed":
            message, details = failure_message(res)
            if data.get("ignore_errors"):
                self._emit("ignored", task=task, host=host, message=message)
            else:
                self._failed[host] = TaskFailure(host, task, message, details)
                self._emit("failed", task=task, host=host, message=message)
        elif name == "runner_on_unreachable":
            message, details = failure_message(res)
            self._failed[host] = TaskFailure(host, task, message, details, unreachable=True)
            self._emit("unreachable", task=task, host=host, message=message)
        elif name == "playbook_on_stats":
            for key, attr in (
                ("ok", "ok"),
                ("changed", "changed"),
                ("failures", "failed"),
                ("dark", "unreachable"),
                ("skipped", "skipped"),
                ("rescued", "rescued"),
            ):
                for stat_host, count in (data.get(key) or {}).items():
                    stats = self.result.hosts.setdefault(stat_host, HostStats())
                    setattr(stats, attr, count)
        return True

    def finish(self, rc: int, status: str) -> PlayResult:
        result = self.result
        result.rc, result.status = rc, status
        result.duration = time.monotonic() - self.started
        result.output_tail = self._tail
        # A failure that a rescue block handled does not count: trust the final host stats.
        failed_hosts = {h for h, s in result.hosts.items() if s.failed or s.unreachable}
        result.failures = [
            f for h, f in self._failed.items() if h in failed_hosts or not result.hosts
        ]
        return result


def _playbook_path(playbook: str) -> Path:
    path = Path(playbook)
    if not path.is_absolute():
        path = playbooks_dir() / (playbook if playbook.endswith(".yml") else f"{playbook}.yml")
    return path


def run_playbook(
    playbook: str,
    inventory: Path,
    *,
    limit: str | None = None,
    extravars: Mapping[str, Any] | None = None,
    check: bool = False,
    verbosity: int = 0,
    on_event: EventCallback | None = None,
    raise_on_failure: bool = True,
    timeout: int | None = None,
) -> PlayResult:
    """Run ``playbooks/<playbook>.yml`` from the project root and return what happened.

    With ``raise_on_failure`` (the default) a failed play raises the matching IrisctlError.
    """
    import ansible_runner  # slow import: only when a play really runs

    path = _playbook_path(playbook)
    if not path.is_file():
        raise ConfigError(f"playbook {path} does not exist")
    collector = _Collector(path.stem, on_event, raw=verbosity > 0)
    env = {
        # ansible-playbook lives next to the interpreter when irisctl runs from a venv
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    cmdline = "--check --diff" if check else None
    private_dir = tempfile.mkdtemp(prefix="irisctl-run-")
    try:
        runner = ansible_runner.run(
            private_data_dir=private_dir,
            project_dir=str(project_root()),
            playbook=str(path),
            inventory=str(inventory),
            limit=limit,
            extravars=dict(extravars or {}),
            cmdline=cmdline,
            verbosity=verbosity or None,
            envvars=env,
            event_handler=collector,
            quiet=True,
            suppress_env_files=True,
            timeout=timeout,
        )
        result = collector.finish(runner.rc if runner.rc is not None else -1, runner.status)
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
    if raise_on_failure:
        raise_for_result(result, limit=limit)
    return result


def lock_refusal(reports: Mapping[str, Any]) -> DeployLockedError | None:
    """The deploy lock someone else holds, from the lock task's report (never from its words)."""
    for host, report in sorted(reports.items()):
        refused = report.get("lock_refused") if isinstance(report, dict) else None
        if refused:
            age = refused.get("age_seconds")
            age_text = f", {age} s ago" if age is not None else ""
            return DeployLockedError(
                f"deploy locked on {host} by {refused.get('holder')} since"
                f" {refused.get('since')}{age_text} (version {refused.get('version') or '?'});"
                " if that deploy is dead: `irisctl unlock` or `irisctl deploy --release-lock`",
                data={"host": host, "lock": refused},
            )
    return None


def raise_for_result(result: PlayResult, limit: str | None = None) -> None:
    """Map a play outcome to the operator error it means (or return when all went well)."""
    # A playbook of several plays (site.yml: store, app hosts, balancer) may have plays that
    # match nobody (a single host has no store): only no host at all is the operator's error.
    if not result.hosts and (result.no_hosts_matched or result.rc == 0):
        where = f"--limit {limit}" if limit else "the inventory's `iris` group"
        raise ConfigError(f"no host matched {where}")
    for failure in result.failures:
        if failure.unreachable:
            refused = _REFUSED_RE.search(failure.message)
            what = "SSH refused by" if refused else "host unreachable:"
            raise HostUnreachableError(f"{what} {failure.host}: {failure.message}")
    refusal = lock_refusal(result.reports)
    if refusal is not None:
        raise refusal
    if result.failures:
        first = result.failures[0]
        report = result.reports.get(first.host)
        raise PlayFailedError(
            f"{result.playbook} failed on {first.host} at task '{first.task}': {first.message}",
            details=first.details,
            data={"host": first.host, **(report if isinstance(report, dict) else {})},
        )
    if result.rc != 0:
        if any("leaves us with no hosts" in line for line in result.output_tail):
            where = f"--limit {limit}" if limit else "the inventory's `iris` group"
            raise ConfigError(f"no host matched {where}")
        errors = [line for line in result.output_tail if "ERROR" in line]
        reason = (errors or result.output_tail or [f"status {result.status}"])[-1].strip()
        if "parse" in reason.lower() and "inventory" in reason.lower():
            raise ConfigError(f"inventory could not be parsed: {reason}")
        raise IrisctlError(f"{result.playbook} failed (ansible rc={result.rc}): {reason}")
