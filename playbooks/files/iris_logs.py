#!/usr/bin/env python3
"""Read (and with --follow, keep reading) IRIS logs on a host; print JSON Lines on stdout.

Runs on the host with only the standard library and Python 3.9 (Amazon Linux 2023's python3):
``playbooks/logs.yml`` ships it with ``ansible.builtin.script`` for a snapshot, and
``irisctl logs --follow`` starts it over the inventory's connection with ``--follow``.

Each output line is one log record: ``{"source": ..., "time": ..., "line": ...}``.

* Files (``--file SOURCE=PATH``, repeatable): a record is a line that starts with a timestamp
  (ISO 8601, or gunicorn's default ``[YYYY-MM-DD HH:MM:SS +ZZZZ]``) plus the lines after it
  that start with none (a traceback's continuation lines belong to the line before). Records
  of all files are merged in time order; ``--since`` and ``--grep`` apply to whole records;
  the last ``--lines`` records are printed. The previous rotation (``PATH.1``) is read first.
  ``time`` is the record's timestamp in UTC (ISO 8601), or null when it has none.
* Journal (``--unit UNIT``, repeatable): ``journalctl --output=json`` of those units.

With ``--follow`` it goes on printing new records until its standard input reaches end of file
(the reader went away: ssh closed, or irisctl ended), following files across rotation.
Exit status: 0, or 3 when none of the files exists (message on stderr).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

POLL_S = 0.1
# A record's continuation lines arrive right after it; it is complete when the file stays
# quiet this long (or the next record starts).
SETTLE_S = 0.3
CHUNK = 1 << 16

_STAMP_RE = re.compile(
    r"^\[?(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<clock>\d{2}:\d{2}:\d{2})"
    r"(?:[.,](?P<fraction>\d{1,9}))?\s?(?P<zone>Z|[+-]\d{2}:?\d{2})?(?:\]|\s|$)"
)


def line_time(line: str) -> float | None:
    """The epoch time a log line starts with, or None (a continuation line)."""
    match = _STAMP_RE.match(line)
    if not match:
        return None
    try:
        moment = datetime.strptime(f"{match['date']} {match['clock']}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    seconds = float("0." + match["fraction"]) if match["fraction"] else 0.0
    zone = match["zone"]
    if zone is None:  # no zone written: the host's local time
        return moment.timestamp() + seconds
    offset = 0
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    utc = moment.replace(tzinfo=timezone.utc)  # noqa: UP017 - Python 3.9 on the host
    return utc.timestamp() - offset + seconds


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, timezone.utc)  # noqa: UP017
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Record:
    __slots__ = ("time", "source", "lines")

    def __init__(self, time_: float | None, source: str, line: str) -> None:
        self.time = time_
        self.source = source
        self.lines = [line]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def as_json(self) -> str:
        return json.dumps({"source": self.source, "time": iso(self.time), "line": self.text})


def records(lines, source: str):  # type: ignore[no-untyped-def]
    """Group lines into records: a timestamped line and the unstamped lines after it."""
    current = None
    for line in lines:
        stamp = line_time(line)
        if current is not None and stamp is None:
            current.lines.append(line)
            continue
        if current is not None:
            yield current
        current = Record(stamp, source, line)
    if current is not None:
        yield current


class Matcher:
    def __init__(self, since: float | None, grep: str | None) -> None:
        self.since = since
        self.pattern = re.compile(grep) if grep else None

    def __call__(self, record: Record, follow: bool = False) -> bool:
        if self.since is not None and not follow and (record.time or 0) < self.since:
            return False
        return self.pattern is None or self.pattern.search(record.text) is not None


class FileReader:
    """One log file read from its start, then followed across rotation and truncation."""

    def __init__(self, source: str, path: str) -> None:
        self.source = source
        self.path = path
        self.fd: int | None = None
        self.inode: int | None = None
        self.offset = 0
        self.rest = b""
        self.pending: Record | None = None
        self.last_line_at = 0.0
        self.last_time: float | None = None
        self._open()

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        self.fd, self.inode, self.offset, self.rest = fd, os.fstat(fd).st_ino, 0, b""
        return True

    @property
    def exists(self) -> bool:
        return self.fd is not None

    def _read_fd(self):  # type: ignore[no-untyped-def]
        assert self.fd is not None
        while True:
            chunk = os.pread(self.fd, CHUNK, self.offset)
            if not chunk:
                return
            self.offset += len(chunk)
            parts = (self.rest + chunk).split(b"\n")
            self.rest = parts.pop()
            for part in parts:
                yield part.decode("utf-8", "replace").rstrip("\r")

    def lines(self):  # type: ignore[no-untyped-def]
        """The complete lines written since the last call (all of them the first time)."""
        if self.fd is None and not self._open():
            return
        yield from self._read_fd()
        try:
            now = os.stat(self.path)
        except OSError:
            return  # rotated away, the new file not created yet: keep the old one
        if now.st_ino != self.inode:  # rotated: the old file is drained, go on in the new one
            os.close(self.fd)  # type: ignore[arg-type]
            if self.rest:
                yield self.rest.decode("utf-8", "replace")
            if self._open():
                yield from self._read_fd()
        elif now.st_size < self.offset:  # truncated in place
            self.offset, self.rest = 0, b""
            yield from self._read_fd()

    def tail(self) -> list[str]:
        return [self.rest.decode("utf-8", "replace")] if self.rest else []

    def new_records(self, now: float) -> list[Record]:
        """Records completed since the last call; a record is complete when the next one
        starts or the file has been quiet for SETTLE_S."""
        done = []
        for line in self.lines():
            self.last_line_at = now
            stamp = line_time(line)
            if stamp is None and self.pending is not None:
                self.pending.lines.append(line)
                continue
            if self.pending is not None:
                done.append(self.pending)
            # a continuation line after its record was shown: keep it next to that record
            self.pending = Record(stamp if stamp is not None else self.last_time, self.source, line)
            self.last_time = self.pending.time
        if self.pending is not None and now - self.last_line_at >= SETTLE_S:
            done.append(self.pending)
            self.pending = None
        return done


def _rotated_lines(path: str):  # type: ignore[no-untyped-def]
    try:
        with open(path + ".1", encoding="utf-8", errors="replace") as previous:
            for line in previous:
                yield line.rstrip("\n").rstrip("\r")
    except OSError:
        return


def _time_key(record: Record) -> float:
    return record.time if record.time is not None else float("-inf")


def _snapshot_lines(reader: FileReader, follow: bool):  # type: ignore[no-untyped-def]
    yield from _rotated_lines(reader.path)
    yield from reader.lines()
    if not follow:  # nothing comes after it: show an unfinished last line as it is
        yield from reader.tail()


def _emit(record: Record) -> None:
    sys.stdout.write(record.as_json() + "\n")


def read_files(specs: list[tuple[str, str]], lines: int, matcher: Matcher, follow: bool) -> int:
    readers = [FileReader(source, path) for source, path in specs]
    present = [r for r in readers if r.exists]
    if not present:
        missing = ", ".join(path for _source, path in specs)
        plural = "s" if len(specs) > 1 else ""
        sys.stderr.write(f"no log file{plural} {missing} on this host\n")
        return 3
    # Several processes write each file, so neighbouring stamps can be a few ms out of order:
    # the last records of each file, then sorted together (stable: file order on a tie).
    last: list[Record] = []
    for reader in present:
        found = records(_snapshot_lines(reader, follow), reader.source)
        last += collections.deque((r for r in found if matcher(r)), maxlen=lines)
    last = sorted(last, key=_time_key)[-lines:] if lines else []
    for record in last:
        _emit(record)
    sys.stdout.flush()
    if not follow:
        return 0
    _stop_when_stdin_closes()
    while True:
        now = time.monotonic()
        done = [r for reader in readers for r in reader.new_records(now)]
        done.sort(key=_time_key)
        for record in done:
            if matcher(record, follow=True):
                _emit(record)
        if done:
            sys.stdout.flush()
        time.sleep(POLL_S)


def journal_record(entry: dict, default_source: str) -> Record:
    """One ``journalctl --output=json`` entry as a record, its line like ``--output=short-iso``."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # binary data: a list of byte values
        message = bytes(message).decode("utf-8", "replace")
    stamp = int(entry.get("__REALTIME_TIMESTAMP") or 0) / 1e6 or None
    ident = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "-"
    pid = entry.get("_PID") or entry.get("SYSLOG_PID")
    source = entry.get("UNIT") or entry.get("_SYSTEMD_UNIT") or default_source
    line = f"{iso(stamp)} {ident}{f'[{pid}]' if pid else ''}: {message or ''}"
    return Record(stamp, source, line)


def _die_with_parent() -> None:
    """journalctl must not outlive this process (Linux: PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def read_journal(
    units: list[str], lines: int, since: float | None, grep: str | None, follow: bool
) -> int:
    argv = ["journalctl", "--no-pager", "--output=json", f"--lines={lines}"]
    argv += [f"--unit={unit}" for unit in units]
    if since is not None:
        argv.append(f"--since=@{int(since)}")
    if grep:
        argv += [f"--grep={grep}", "--case-sensitive=true"]
    if follow:
        argv.append("--follow")
    try:
        journal = subprocess.Popen(argv, stdout=subprocess.PIPE, preexec_fn=_die_with_parent)
    except FileNotFoundError:
        sys.stderr.write("no journalctl on this host\n")
        return 3
    _CHILDREN.append(journal)
    if follow:
        _stop_when_stdin_closes()
    assert journal.stdout is not None
    for raw in journal.stdout:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        _emit(journal_record(entry, units[0]))
        if follow:
            sys.stdout.flush()
    rc = journal.wait()
    # journalctl exits 1 when --grep matches nothing
    return 0 if rc == 0 or (rc == 1 and grep) else rc


_CHILDREN: list[subprocess.Popen] = []


def _stop_when_stdin_closes() -> None:
    """The reader is gone when our standard input ends: stop, with journalctl."""

    def watch() -> None:
        try:
            while os.read(0, CHUNK):
                pass
        except OSError:
            pass
        for child in _CHILDREN:
            with contextlib.suppress(OSError):
                child.kill()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", action="append", default=[], metavar="SOURCE=PATH")
    parser.add_argument("--unit", action="append", default=[], metavar="UNIT")
    parser.add_argument("--lines", type=int, default=50)
    parser.add_argument("--since", type=float, metavar="EPOCH")
    parser.add_argument("--grep", metavar="REGEX")
    parser.add_argument("--follow", action="store_true")
    args = parser.parse_args(argv)
    if bool(args.file) == bool(args.unit):
        parser.error("give --file or --unit")
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        if args.unit:
            return read_journal(args.unit, args.lines, args.since, args.grep, args.follow)
        specs = [tuple(spec.split("=", 1)) for spec in args.file]
        return read_files(specs, args.lines, Matcher(args.since, args.grep), args.follow)  # type: ignore[arg-type]
    except re.error as exc:
        sys.stderr.write(f"--grep: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
