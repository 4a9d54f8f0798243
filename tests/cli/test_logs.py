"""irisctl logs: the host-side reader, the snapshot play and a real --follow on this machine.

The reader (playbooks/files/iris_logs.py) is tested as a program on temporary log files; the
CLI runs against an inventory whose one host is this machine (ansible_connection=local) with
``service_log_dir`` pointing at a temporary directory, so nothing needs a sandbox host.
"""

from __future__ import annotations

import importlib.util
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from irisctl.ops.follow import _without_control_master, host_streams
from irisctl.ops.logs import READER, LogQuery, merge_log_records, parse_log_records

IRISCTL = str(Path(sys.executable).parent / "irisctl")

ACCESS = [
    '2025-03-01T10:00:01.000Z 127.0.0.1 "GET /api/iris/health HTTP/1.0" 200 64 3ms "curl"',
    '2025-03-01T10:00:04.500Z 127.0.0.1 "POST /api/iris/analyze HTTP/1.0" 500 80 9ms "vscode"',
]
ERROR = [
    "2025-03-01T10:00:02.000+00:00 [41] [INFO] Booting worker with pid: 41",
    "2025-03-01T10:00:04.000+00:00 [41] [ERROR] Exception in analyze",
    "Traceback (most recent call last):",
    '  File "agent.py", line 3, in analyze',
    "ValueError: model reply unusable",
]


def _load_reader() -> Any:
    spec = importlib.util.spec_from_file_location("iris_logs", READER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reader = _load_reader()


def write_lines(path: Path, lines: list[str]) -> None:
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)


def run_reader(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run(
        [sys.executable, str(READER), *args], capture_output=True, text=True, timeout=60
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "log"
    directory.mkdir()
    write_lines(directory / "access.log", ACCESS)
    write_lines(directory / "error.log", ERROR)
    return directory


def files(log_dir: Path) -> list[str]:
    return [f"--file=access={log_dir}/access.log", f"--file=error={log_dir}/error.log"]


# ------------------------------------------------------------------------------ reader ---


@pytest.mark.parametrize(
    ("line", "iso"),
    [
        ("2025-03-01T10:00:04.500Z x", "2025-03-01T10:00:04.500Z"),
        ("2025-03-01T12:00:04,5+02:00 x", "2025-03-01T10:00:04.500Z"),
        ("2025-03-01 10:00:04 -0130 x", "2025-03-01T11:30:04.000Z"),
        (
            "[2025-03-01 10:00:04 +0000] [41] [INFO] gunicorn's own format",
            "2025-03-01T10:00:04.000Z",
        ),
    ],
)
def test_reader_reads_the_timestamp_a_line_starts_with(line: str, iso: str) -> None:
    assert reader.iso(reader.line_time(line)) == iso


@pytest.mark.parametrize("line", ["Traceback (most recent call last):", "  File 'x'", "", "2025"])
def test_reader_sees_lines_without_a_timestamp_as_continuations(line: str) -> None:
    assert reader.line_time(line) is None


def test_reader_merges_files_in_time_order_with_tracebacks_kept_whole(log_dir: Path) -> None:
    rc, records, _ = run_reader(*files(log_dir))
    assert rc == 0
    assert [(r["source"], r["time"]) for r in records] == [
        ("access", "2025-03-01T10:00:01.000Z"),
        ("error", "2025-03-01T10:00:02.000Z"),
        ("error", "2025-03-01T10:00:04.000Z"),
        ("access", "2025-03-01T10:00:04.500Z"),
    ]
    assert records[2]["line"] == "\n".join(ERROR[1:])


def test_reader_lines_counts_records_and_grep_matches_whole_records(log_dir: Path) -> None:
    _, last_two, _ = run_reader(*files(log_dir), "--lines=2")
    assert [r["time"] for r in last_two] == ["2025-03-01T10:00:04.000Z", "2025-03-01T10:00:04.500Z"]
    # the pattern is only on a continuation line: the whole record matches
    _, matched, _ = run_reader(*files(log_dir), "--grep=ValueError")
    assert [r["line"].splitlines()[0] for r in matched] == [ERROR[1]]


def test_reader_sorts_stamps_a_few_ms_out_of_order(tmp_path: Path) -> None:
    # several workers write one file: neighbouring stamps need not be in order
    stamps = ["2025-03-01T10:00:00.009Z b", "2025-03-01T10:00:00.002Z a"]
    write_lines(tmp_path / "error.log", stamps)
    _, records, _ = run_reader(f"--file=error={tmp_path}/error.log")
    assert [r["line"][-1] for r in records] == ["a", "b"]


def test_reader_since_drops_older_records(log_dir: Path) -> None:
    since = reader.line_time("2025-03-01T10:00:03Z")
    _, records, _ = run_reader(*files(log_dir), f"--since={since}")
    assert [r["source"] for r in records] == ["error", "access"]


def test_reader_reads_the_previous_rotation_first(log_dir: Path) -> None:
    (log_dir / "access.log").rename(log_dir / "access.log.1")
    write_lines(log_dir / "access.log", ['2025-03-01T10:00:09.000Z 127.0.0.1 "GET /" 404'])
    _, records, _ = run_reader(f"--file=access={log_dir}/access.log")
    assert [r["time"][11:19] for r in records] == ["10:00:01", "10:00:04", "10:00:09"]


def test_reader_without_any_file_exits_3_naming_it(tmp_path: Path) -> None:
    rc, records, stderr = run_reader(f"--file=access={tmp_path}/access.log")
    assert (rc, records) == (3, [])
    assert stderr.strip() == f"no log file {tmp_path}/access.log on this host"


def test_reader_turns_journal_entries_into_records() -> None:
    entry = {
        "__REALTIME_TIMESTAMP": "1740823204500000",
        "SYSLOG_IDENTIFIER": "gunicorn",
        "_PID": "41",
        "_SYSTEMD_UNIT": "iris-backend.service",
        "MESSAGE": [104, 105],  # the journal's form of a message that is not plain text
    }
    record = json.loads(reader.journal_record(entry, "x.service").as_json())
    assert record == {
        "source": "iris-backend.service",
        "time": "2025-03-01T10:00:04.500Z",
        "line": "2025-03-01T10:00:04.500Z gunicorn[41]: hi",
    }
    # systemd's own lines about the unit are tagged with that unit
    about = {**entry, "_SYSTEMD_UNIT": "init.scope", "UNIT": "nginx.service", "MESSAGE": "Started"}
    assert json.loads(reader.journal_record(about, "x").as_json())["source"] == "nginx.service"


# ---------------------------------------------------------------------- CLI-side logic ---


def test_query_reader_args_default_to_the_service_files() -> None:
    assert LogQuery().reader_args() == [
        "--file=access={{ service_access_log }}",
        "--file=error={{ service_error_log }}",
        "--lines=50",
    ]
    unit = LogQuery(unit="service", lines=5, grep="boom").reader_args(follow=True)
    assert unit == ["--unit={{ service_unit }}.service", "--lines=5", "--grep=boom", "--follow"]


def test_parse_log_records_skips_what_is_not_a_record() -> None:
    output = '{"source": "error", "time": null, "line": "x"}\r\nWarning: stray\n\n{"a": 1}\n'
    assert parse_log_records(output) == [{"source": "error", "time": None, "line": "x"}]


def test_merge_log_records_orders_hosts_by_time_keeping_untimed_in_place() -> None:
    records = [
        {"host": "a", "source": "s", "time": "2025-03-01T10:00:01.000Z", "line": "a1"},
        {"host": "a", "source": "s", "time": None, "line": "a1 again"},
        {"host": "a", "source": "s", "time": "2025-03-01T10:00:03.000Z", "line": "a3"},
        {"host": "b", "source": "s", "time": "2025-03-01T10:00:02.000Z", "line": "b2"},
    ]
    merged = [r["line"] for r in merge_log_records(records)]
    assert merged == ["a1", "a1 again", "b2", "a3"]


def test_follow_drops_ssh_control_master_options() -> None:
    args = ["-o", "ControlMaster=auto", "-oControlPersist=60s", "-o", "ServerAliveInterval=15"]
    assert _without_control_master([*args, "-J", "bastion"]) == [
        "-o",
        "ServerAliveInterval=15",
        "-J",
        "bastion",
    ]


def test_follow_runs_the_reader_over_ssh_with_the_inventory_settings(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[iris]\nweb-1 ansible_host=192.0.2.7 ansible_port=2222\n"
        "[iris:vars]\nansible_user=ec2-user\nansible_ssh_private_key_file=/keys/id\n"
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no'\n"
        "ansible_python_interpreter=/usr/bin/python3\nservice_log_dir=/srv/log\n"
    )
    (stream,) = host_streams(inventory, None, LogQuery(lines=10))
    argv = stream.argv
    assert stream.host == "web-1"
    assert argv[:2] == ["ssh", "-T"] and argv[-2] == "192.0.2.7"
    for pair in (["-p", "2222"], ["-i", "/keys/id"], ["-l", "ec2-user"]):
        assert pair[1] == argv[argv.index(pair[0]) + 1]
    assert "StrictHostKeyChecking=no" in argv
    assert not [a for a in argv if a.startswith("Control")]
    remote = argv[-1]
    # ansible.cfg says become: sudo to root, reading the code from stdin (sudo logs argv)
    assert remote.startswith("sudo -n -u root -- /usr/bin/python3 -c ")
    assert remote.endswith("--file=access=/srv/log/access.log --file=error=/srv/log/error.log "
                           "--lines=10 --follow")  # fmt: skip


def test_the_cloudwatch_agent_ships_the_files_logs_reads_by_default() -> None:
    import yaml
    from irisctl.ops.logs import DEFAULT_FILES, LOG_FILES
    from irisctl.paths import project_root

    roles = project_root() / "roles"
    agent = yaml.safe_load((roles / "cloudwatch_agent" / "defaults" / "main.yml").read_text())
    shipped = {entry["file_path"] for entry in agent["cloudwatch_agent_log_files"]}
    # the same variables (the service role's), so the two cannot name different files
    assert {LOG_FILES[name] for name in DEFAULT_FILES} <= shipped


# ---------------------------------------------------------------- real play and follow ---


@pytest.fixture
def log_inventory(tmp_path: Path, log_dir: Path) -> Path:
    """This machine as the one `iris` host, its service logs in ``log_dir``."""
    path = tmp_path / "hosts.ini"
    path.write_text(
        "[iris]\nlocal-1 ansible_connection=local "
        f"ansible_python_interpreter={sys.executable} service_log_dir={log_dir}\n"
    )
    return path


def test_logs_shows_both_files_merged_and_tagged(invoke, log_inventory: Path) -> None:
    result = invoke("-i", str(log_inventory), "logs")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"access | {ACCESS[0]}"
    assert lines[2:6] == [f"error  | {line}" for line in ERROR[1:]]
    assert lines[-1] == f"access | {ACCESS[1]}"


def test_logs_json_is_one_object_per_record(invoke, log_inventory: Path) -> None:
    result = invoke("-i", str(log_inventory), "logs", "--json", "--grep", "POST|Booting")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records == [
        {
            "host": "local-1",
            "source": "error",
            "time": "2025-03-01T10:00:02.000Z",
            "line": ERROR[0],
        },
        {
            "host": "local-1",
            "source": "access",
            "time": "2025-03-01T10:00:04.500Z",
            "line": ACCESS[1],
        },
    ]


class Follower:
    """``irisctl logs --follow`` as a subprocess, its output lines collected as they come."""

    def __init__(self, inventory: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [IRISCTL, "-i", str(inventory), "logs", "--follow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                stderr = self.proc.stderr.read() if self.proc.poll() is not None else ""
                raise AssertionError(f"not seen; got {self.seen}; stderr {stderr!r}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return line

    def descendants(self) -> set[int]:
        return _descendants(self.proc.pid)

    def stop(self, signum: int) -> tuple[float, int]:
        started = time.monotonic()
        self.proc.send_signal(signum)
        rc = self.proc.wait(timeout=10)
        return time.monotonic() - started, rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def follower(log_inventory: Path) -> Iterator[Callable[..., Follower]]:
    started: list[Follower] = []

    def start(*args: str) -> Follower:
        started.append(Follower(log_inventory, *args))
        return started[-1]

    yield start
    for one in started:
        one.kill()


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_follow_shows_new_lines_and_stops_within_a_second(
    follower, log_dir: Path, signum: int, status: int
) -> None:
    logs = follower("--lines", "1")
    logs.wait_for(lambda line: line == f"access | {ACCESS[1]}")
    # lines written now show up, a traceback with its record, in both files
    write_lines(log_dir / "error.log", ["2025-03-01T10:01:00Z [41] [ERROR] again", "Trace 1"])
    write_lines(log_dir / "access.log", ['2025-03-01T10:01:01Z 127.0.0.1 "GET /new" 200'])
    logs.wait_for(lambda line: line == "error  | Trace 1")
    logs.wait_for(lambda line: "/new" in line)
    children = logs.descendants()
    assert children, "the follow runs its reader as a child process"
    elapsed, rc = logs.stop(signum)
    print(f"{signal.Signals(signum).name} -> exit {rc} in {elapsed:.3f}s")
    assert rc == status
    assert elapsed < 1.0
    assert not [pid for pid in children if _alive(pid)], "a child process outlived irisctl"


def test_follow_json_and_rotation(follower, log_dir: Path) -> None:
    logs = follower("--json", "--lines", "0", "--grep", "GET")
    deadline = time.monotonic() + 60
    # --lines 0: only what is written from now on; keep writing until the follow is reading
    while time.monotonic() < deadline:
        write_lines(log_dir / "access.log", ['2025-03-01T10:02:00Z 127.0.0.1 "GET /one" 200'])
        write_lines(log_dir / "access.log", ['2025-03-01T10:02:00Z 127.0.0.1 "PUT /no" 200'])
        try:
            first = logs.wait_for(lambda line: "/one" in line, timeout=1)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"nothing followed: {logs.seen}")
    assert json.loads(first) == {
        "host": "local-1",
        "source": "access",
        "time": "2025-03-01T10:02:00.000Z",
        "line": '2025-03-01T10:02:00Z 127.0.0.1 "GET /one" 200',
    }
    # logrotate's `create`: the file is renamed, a new one takes its name
    (log_dir / "access.log").rename(log_dir / "access.log.1")
    write_lines(log_dir / "access.log", ['2025-03-01T10:03:00Z 127.0.0.1 "GET /two" 200'])
    logs.wait_for(lambda line: "/two" in line)
    assert not [line for line in logs.seen if "PUT" in line]
    _elapsed, rc = logs.stop(signal.SIGTERM)
    assert rc == 143


def test_follow_of_a_host_without_the_log_files_fails_with_the_reason(
    invoke, tmp_path: Path
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[iris]\nlocal-1 ansible_connection=local "
        f"ansible_python_interpreter={sys.executable} service_log_dir={tmp_path}/none\n"
    )
    result = invoke("-i", str(inventory), "logs", "--follow")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: logs --follow on local-1 ended: no log files {tmp_path}/none/access.log, "
        f"{tmp_path}/none/error.log on this host"
    )


def test_follow_ends_on_sighup_with_129(follower) -> None:
    logs = follower("--lines", "1")
    logs.wait_for(lambda line: "POST" in line)
    elapsed, rc = logs.stop(signal.SIGHUP)
    assert (rc, elapsed < 1.0) == (129, True)
