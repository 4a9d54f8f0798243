"""Reading a release's own log lines: what the health gate judges and reports (module_utils
of the release role, shared by its modules)."""

from __future__ import annotations

import os
import re
import subprocess

# A worker that died (not one stopped on purpose with SIGTERM).
WORKER_DEATH = re.compile(
    r"Worker \(pid:\d+\) (?:exited with code|was sent (?!SIGTERM)\S+)", re.IGNORECASE
)


def new_log_lines(path, offset):
    """Lines appended to the error log since ``offset`` (from the start when it was rotated)."""
    if not path:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() < offset:
                offset = 0
            handle.seek(offset)
            data = handle.read(4 * 1024 * 1024)
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()


def journal_lines(unit, since, count):
    argv = ["journalctl", "--unit", unit + ".service", "--no-pager", "--output", "cat"]
    argv += ["--since", since] if since else ["--lines", str(count)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in done.stdout.splitlines() if line.strip()]


RECORD_START = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
PROBLEM = re.compile(r"\[(?:ERROR|CRITICAL)\]|refusing to start")
VOLATILE = re.compile(r"^\S+ \[\d+\] |\(pid: ?\d+\)|pid:\d+")


def records(lines):
    """Group log lines into records: a timestamped line and the lines that follow it without
    one (a traceback)."""
    grouped = []
    for line in lines:
        if RECORD_START.match(line) or not grouped:
            grouped.append([line])
        else:
            grouped[-1].append(line)
    return grouped


def problem_lines(lines, count):
    """The release's problems in at most ``count`` lines, newest last: error records and
    tracebacks, each told once (every worker repeats the same traceback), a long traceback
    shortened to its first line and its innermost frames with the exception itself."""
    seen, chosen = set(), []
    for record in records(lines):
        if not (PROBLEM.search(record[0]) or len(record) > 1):
            continue
        identity = "\n".join(VOLATILE.sub("", line) for line in record)
        if identity in seen:
            continue
        seen.add(identity)
        chosen.append(record)
    out = []
    for record in reversed(chosen):
        room = count - len(out)
        if room <= 0:
            break
        if len(record) > room:
            # Keep what the record is (its first line, and "Traceback ..." under it) and its end,
            # where the innermost frames and the exception itself are.
            head = record[:2] if record[1].startswith("Traceback") else record[:1]
            tail = room - len(head) - 1
            record = head + ["  ..."] + record[-tail:] if tail > 0 else record[-room:]
        out = record + out
    return out
