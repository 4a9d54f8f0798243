"""The deploy's health gate module (roles/release/library/iris_health_gate.py) against real
local HTTP servers and log files; the systemd side is exercised on real hosts (tests/hosts)."""

from __future__ import annotations

import http.server
import importlib.util
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from irisctl.paths import project_root

ROLE = project_root() / "roles" / "release"
LIBRARY = ROLE / "library" / "iris_health_gate.py"


@pytest.fixture(scope="module")
def gate():  # type: ignore[no-untyped-def]
    # As Ansible does for a role's modules: the role's module_utils join ansible.module_utils.
    import ansible.module_utils

    if str(ROLE / "module_utils") not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(str(ROLE / "module_utils"))
    spec = importlib.util.spec_from_file_location("iris_health_gate", LIBRARY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve(status: int, body: dict) -> Iterator[str]:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/iris/health"
    finally:
        server.shutdown()


@pytest.fixture
def healthy_url() -> Iterator[str]:
    yield from serve(200, {"status": "ok", "version": "2.0.0"})


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A socket that accepts connections (the kernel does) but never answers: like the socket
    unit holding the port while the release behind it hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/iris/health"
    finally:
        listener.close()


def params(url: str, **overrides: object) -> dict:
    return {
        "unit": "iris-test-nonexistent",
        "url": url,
        "expected_version": "2.0.0",
        "timeout": 3.0,
        "probe_timeout": 0.5,
        "interval": 0.1,
        "error_log": "",
        "error_log_offset": 0,
        "since": "",
        "lines": 5,
        "max_worker_deaths": 3,
        **overrides,
    }


def test_a_healthy_release_with_the_expected_version_passes(gate, healthy_url: str) -> None:
    assert gate.wait(params(healthy_url))["healthy"] is True


def test_the_wrong_version_fails_when_the_time_is_up(gate, healthy_url: str) -> None:
    result = gate.wait(params(healthy_url, expected_version="3.0.0", timeout=0.5))
    assert result["healthy"] is False and result["failure"] == "wrong_version"
    assert "'2.0.0'" in result["summary"]


def test_a_release_that_accepts_but_never_answers_is_no_answer_within_the_timeout(
    gate, silent_url: str
) -> None:
    started = time.monotonic()
    result = gate.wait(params(silent_url, timeout=1.5))
    assert result["failure"] == "no_answer"
    # bounded by the timeout plus one probe, however slow the machine is otherwise
    assert time.monotonic() - started < 1.5 + 0.5 + 5


def test_workers_dying_after_the_mark_fail_the_gate_before_the_timeout(
    gate, silent_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "error.log"
    log.write_text("Worker (pid:1) exited with code 1.\n" * 5)  # an older release's deaths
    mark = gate.mark(params(silent_url, error_log=str(log)))
    assert mark["error_log_offset"] == log.stat().st_size
    with log.open("a") as handle:
        handle.write("booting worker\n")
        for pid in (11, 12, 13):
            handle.write(f"[ERROR] Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?\n")
    since_mark = params(silent_url, error_log=str(log), error_log_offset=mark["error_log_offset"])
    result = gate.wait({**since_mark, "timeout": 60})
    assert result["failure"] == "workers_die"
    lines = gate.error_lines(since_mark)
    assert lines[0] == "booting worker" and "pid:13" in lines[-1]


def test_graceful_worker_stops_do_not_count_as_deaths(gate) -> None:
    assert not gate.WORKER_DEATH.search("[INFO] Worker (pid:7) was sent SIGTERM!")
    assert gate.WORKER_DEATH.search("[WARNING] Worker (pid:7) was sent SIGSEGV!")
    assert gate.WORKER_DEATH.search("[ERROR] Worker (pid:7) exited with code 3.")


def test_a_rotated_error_log_is_read_from_its_start(gate, tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text("Traceback (most recent call last):\nRuntimeError: boom\n")
    assert gate.new_log_lines(str(log), 10_000) == [
        "Traceback (most recent call last):",
        "RuntimeError: boom",
    ]


@pytest.mark.parametrize(
    ("active", "sub", "ended"),
    [
        ("activating", "auto-restart", True),
        ("failed", "failed", True),
        ("inactive", "dead", True),
        ("active", "running", False),
        ("deactivating", "stop-sigterm", False),
    ],
)
def test_unit_states_that_mean_the_main_process_ended(
    gate, active: str, sub: str, ended: bool
) -> None:
    assert gate.exited(active, sub) is ended


def worker_boot_failure(pid: int, frames: int = 30) -> list[str]:
    """What gunicorn writes when a worker cannot import the app: the same traceback per worker."""
    stamp = f"2026-11-26T12:45:38.{pid:03d}+00:00"
    return [
        f"{stamp} [{pid}] [ERROR] Exception in worker process",
        "Traceback (most recent call last):",
        *[f'  File "frame{i}.py", line {i}, in load' for i in range(frames)],
        "RuntimeError: deliberately broken release",
        f"{stamp} [{pid}] [INFO] Worker exiting (pid: {pid})",
        f"{stamp} [900] [ERROR] Worker (pid:{pid}) exited with code 3.",
    ]


def test_error_lines_tell_each_traceback_once_and_keep_the_exception_line(gate) -> None:
    lines = [
        "2026-11-26T12:45:38.000+00:00 [900] [INFO] Starting gunicorn 27.0.1",
        *worker_boot_failure(901),
        *worker_boot_failure(902),
        "2026-11-26T12:45:39.000+00:00 [900] [INFO] Shutting down: Master",
        "2026-11-26T12:45:39.000+00:00 [900] [ERROR] Reason: Worker failed to boot.",
    ]
    summary = gate.problem_lines(lines, 20)
    assert len(summary) == 20
    assert summary[0].endswith("[ERROR] Exception in worker process")
    assert summary[1] == "Traceback (most recent call last):"
    assert summary.count("RuntimeError: deliberately broken release") == 1
    assert summary[-1].endswith("Reason: Worker failed to boot.")
    assert not any("[INFO]" in line for line in summary)


def test_error_lines_fall_back_to_the_last_lines_when_nothing_is_an_error(
    gate, tmp_path: Path
) -> None:
    log = tmp_path / "error.log"
    log.write_text("".join(f"2026-11-26T12:00:0{i}.000+00:00 [1] [INFO] n {i}\n" for i in range(5)))
    lines = gate.error_lines(params("http://127.0.0.1:9/", error_log=str(log), error_log_offset=0))
    assert lines[-2:] == [
        "2026-11-26T12:00:03.000+00:00 [1] [INFO] n 3",
        "2026-11-26T12:00:04.000+00:00 [1] [INFO] n 4",
    ]
