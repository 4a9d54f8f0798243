#!/usr/bin/python
"""The deploy's health gate: decide within seconds whether a freshly started release serves."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: iris_health_gate
short_description: Wait until the IRIS service answers healthy, or say how its release fails
description:
  - Polls the unit's state and the health URL together, so a broken release is recognised by
    what it does instead of by a long wait. A release whose master exits (an import error, a
    bad configuration) is seen the moment systemd schedules its restart; one whose workers keep
    dying after the master started is seen after I(max_worker_deaths) deaths in the error log;
    one that starts and never answers is seen when I(timeout) ends.
  - Each health probe has its own short timeout because the socket unit accepts connections
    even when nothing serves them.
  - Never fails by itself; C(healthy) and C(failure) tell the caller what happened, and
    C(error_lines) carries the release's own last error lines (error log, then journal).
options:
  unit:
    description: systemd service unit name, without C(.service).
    type: str
    required: true
  url:
    description: Health URL on the host.
    type: str
    required: true
  expected_version:
    description: Version the health body must report; empty accepts any.
    type: str
    default: ""
  timeout:
    description: Seconds to wait for a healthy answer.
    type: float
    default: 12
  probe_timeout:
    description: Seconds one health request may take.
    type: float
    default: 2
  interval:
    description: Seconds between polls.
    type: float
    default: 0.5
  error_log:
    description: The service's error log (gunicorn's errorlog); the lines after
      I(error_log_offset) are the release's own.
    type: path
    default: ""
  error_log_offset:
    description: Size of I(error_log) before the release started (from C(state=mark));
      negative means its size now.
    type: int
    default: -1
  since:
    description: Journal time (C(YYYY-MM-DD HH:MM:SS) UTC) from which the unit's journal lines
      belong to this start.
    type: str
    default: ""
  lines:
    description: Error lines to return.
    type: int
    default: 20
  max_worker_deaths:
    description: Worker deaths after which a running master counts as a failed release.
    type: int
    default: 3
  state:
    description: C(wait) judges the release that runs now; C(restarted) first restarts the unit
      (marking the error log and the journal just before, so only the new start's lines count)
      and then judges it; C(mark) only returns the error log's size and the journal time, to
      pass to a later C(wait).
    type: str
    choices: [wait, restarted, mark]
    default: wait
  kill_first:
    description: With C(restarted), SIGKILL every process of the unit before the restart. For
      a release that failed its gate: a hung worker would hold a graceful stop for gunicorn's
      graceful_timeout, and a failed release serves nobody.
    type: bool
    default: false
  daemon_reload:
    description: With C(restarted), reload systemd's unit files first.
    type: bool
    default: false
"""

RETURN = r"""
healthy:
  description: The health URL answered 200 with the expected version before the timeout.
  type: bool
failure:
  description: exits_at_start, workers_die, no_answer, wrong_version, unhealthy, or empty.
  type: str
summary:
  description: One line saying what was seen.
  type: str
seconds:
  description: Seconds the gate took.
  type: float
error_lines:
  description: The release's own last error lines (traceback included), newest last.
  type: list
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.iris_release_logs import (
    WORKER_DEATH,
    journal_lines,
    new_log_lines,
    problem_lines,
)

JOURNAL_TIME = "%Y-%m-%d %H:%M:%S"


def unit_state(unit):
    """ActiveState and SubState of the unit, e.g. ('activating', 'auto-restart')."""
    try:
        done = subprocess.run(
            ["systemctl", "show", unit + ".service", "--property=ActiveState,SubState"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "", ""
    props = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return props.get("ActiveState", ""), props.get("SubState", "")


def exited(active, sub):
    """The main process ended since its start job completed: systemd is waiting to restart it,
    gave up, or it exited cleanly (which a server never should)."""
    return active in ("failed", "inactive") or sub == "auto-restart"


def probe(url, timeout):
    """(status, body) of one health request; status -1 when nothing answered in time."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        return -1, str(getattr(exc, "reason", exc))


def reported_version(body):
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return str(data.get("version", "")) if isinstance(data, dict) else ""


def error_lines(params):
    """The release's own words first: the problems in its error log (tracebacks live there),
    else its last lines; topped up from the journal (gunicorn's own start-up errors, before it
    opened the log, and systemd's verdict)."""
    count = params["lines"]
    own = new_log_lines(params["error_log"], params["error_log_offset"])
    lines = problem_lines(own, count) or own[-count:]
    if len(lines) < count:
        journal = journal_lines(params["unit"], params["since"], count)
        lines = journal[-(count - len(lines)) :] + lines
    return lines


def systemctl(*args):
    try:
        done = subprocess.run(
            ["systemctl", *args], capture_output=True, text=True, check=False, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return done.returncode, (done.stderr or done.stdout).strip()


def restart(params):
    """Restart the unit; with Type=notify this returns once gunicorn's master is up, before its
    workers have loaded the app. Returns systemctl's error text, or '' on success."""
    unit = params["unit"] + ".service"
    if params["daemon_reload"]:
        systemctl("daemon-reload")
    if params["kill_first"]:
        systemctl("kill", "--signal=SIGKILL", unit)
        systemctl("reset-failed", unit)
    code, text = systemctl("restart", unit)
    return "" if code == 0 else text or f"systemctl restart {unit} failed ({code})"


def mark(params):
    size = 0
    if params["error_log"]:
        try:
            size = os.path.getsize(params["error_log"])
        except OSError:
            size = 0
    # journalctl reads --since in the host's local time unless told the zone.
    return {"error_log_offset": size, "since": time.strftime(JOURNAL_TIME, time.gmtime()) + " UTC"}


def wait(params):
    started = time.monotonic()
    deadline = started + params["timeout"]
    status, body, failure, summary = -1, "", "", ""
    while True:
        status, body = probe(params["url"], params["probe_timeout"])
        version = reported_version(body)
        if status == 200 and params["expected_version"] in ("", version):
            return {"healthy": True, "failure": "", "summary": f"healthy (version {version})"}
        active, sub = unit_state(params["unit"])
        deaths = [
            line
            for line in new_log_lines(params["error_log"], params["error_log_offset"])
            if WORKER_DEATH.search(line)
        ]
        if exited(active, sub):
            failure = "exits_at_start"
            summary = f"the service's main process exited (unit {active}/{sub})"
            break
        if len(deaths) >= params["max_worker_deaths"]:
            failure = "workers_die"
            summary = f"its workers keep dying ({len(deaths)} deaths: {deaths[-1].strip()})"
            break
        if time.monotonic() + params["interval"] >= deadline:
            if status == 200:
                failure = "wrong_version"
                summary = f"health reports version {version!r}, not {params['expected_version']!r}"
            elif status > 0:
                failure = "unhealthy"
                summary = f"health answered HTTP {status}: {body.strip()[:300]}"
            else:
                failure = "no_answer"
                summary = f"no health answer within {params['timeout']:g} s ({body})"
            break
        time.sleep(params["interval"])
    return {"healthy": False, "failure": failure, "summary": summary}


def main():
    module = AnsibleModule(
        argument_spec={
            "unit": {"type": "str", "required": True},
            "url": {"type": "str", "required": True},
            "expected_version": {"type": "str", "default": ""},
            "timeout": {"type": "float", "default": 12},
            "probe_timeout": {"type": "float", "default": 2},
            "interval": {"type": "float", "default": 0.5},
            "error_log": {"type": "path", "default": ""},
            "error_log_offset": {"type": "int", "default": -1},
            "since": {"type": "str", "default": ""},
            "lines": {"type": "int", "default": 20},
            "max_worker_deaths": {"type": "int", "default": 3},
            "state": {
                "type": "str",
                "choices": ["wait", "restarted", "mark"],
                "default": "wait",
            },
            "kill_first": {"type": "bool", "default": False},
            "daemon_reload": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["state"] == "mark":
        module.exit_json(changed=False, **mark(params))
    started = time.monotonic()
    changed = False
    if params["state"] == "restarted":
        if module.check_mode:
            module.exit_json(changed=True, healthy=True, failure="", summary="would restart")
        params.update(mark(params))
        changed = True
        refused = restart(params)
        if refused:
            # A start job that failed outright (e.g. the master exited before READY).
            result = {"healthy": False, "failure": "exits_at_start", "summary": refused}
            result["seconds"] = round(time.monotonic() - started, 2)
            result["error_lines"] = error_lines(params)
            module.exit_json(changed=changed, **result)
    elif params["error_log_offset"] < 0:
        params.update(mark(params))
    result = wait(params)
    result["seconds"] = round(time.monotonic() - started, 2)
    result["error_lines"] = [] if result["healthy"] else error_lines(params)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
