"""``irisctl logs --follow``: the log reader running live on each host, records as they come.

The reader (``playbooks/files/iris_logs.py``) runs with ``--follow`` over each host's own
connection (ssh or local, with the settings Ansible resolves from the inventory), one
long-running process per host, so new lines arrive as they are written and stopping is
killing those processes.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import selectors
import shlex
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irisctl.errors import ConfigError, IrisctlError
from irisctl.inventory import iris_hosts
from irisctl.ops.logs import READER, LogQuery, host_record, parse_log_record
from irisctl.paths import project_root

# `python3 -c BOOTSTRAP N ARGS`: read the reader's N bytes of code from standard input, run it.
# The code travels on stdin (not the command line, which sudo logs), and stdin stays open:
# its end tells the reader that irisctl went away.
_BOOTSTRAP = (
    "import sys;n=int(sys.argv.pop(1));"
    "exec(compile(sys.stdin.buffer.read(n),'iris_logs.py','exec'),{'__name__':'__main__'})"
)


@dataclass(frozen=True)
class HostStream:
    """How to run the reader on one host: the local argv (ssh, or the reader itself)."""

    host: str
    argv: list[str]


def _trusted(text: str) -> Any:
    """Our own templates: ansible-core 2.19 renders only strings marked as trusted."""
    try:
        from ansible.template import trust_as_template
    except ImportError:  # ansible-core < 2.19 renders every string
        return text
    return trust_as_template(text)


def _ssh_option(name: str, values: dict[str, Any], templar: Any) -> Any:
    from ansible import constants
    from ansible.plugins.loader import connection_loader

    connection_loader.get("ssh", class_only=True)  # registers the plugin's options
    value = constants.config.get_config_value(
        name, plugin_type="connection", plugin_name="ssh", variables=values
    )
    return templar.template(value) if isinstance(value, str) else value


def _without_control_master(args: list[str]) -> list[str]:
    """ssh options without Control*: our one long session needs no multiplexing, and a
    ControlPersist master would outlive irisctl."""
    kept: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "-o" and i + 1 < len(args):
            pair, option = args[i : i + 2], args[i + 1]
        elif args[i].startswith("-o"):
            pair, option = args[i : i + 1], args[i][2:]
        else:
            kept.append(args[i])
            i += 1
            continue
        if not option.strip().lower().startswith("control"):
            kept += pair
        i += len(pair)
    return kept


def host_streams(inventory: Path, limit: str | None, query: LogQuery) -> list[HostStream]:
    """The command that runs the reader with ``--follow`` on each host."""
    from ansible import constants

    # The variables the reader's arguments name (service_log_dir, service_unit): the service
    # role's defaults, overridden by the inventory, as in the plays.
    defaults = project_root() / "roles" / "service" / "defaults" / "main.yml"
    streams = []
    for name, values, templar in iris_hosts(inventory, limit, [defaults]):

        def var(key: str, default: Any = None, templar: Any = templar, values: Any = values) -> Any:
            value = values.get(key, default)
            return templar.template(value) if isinstance(value, str) else value

        args = [templar.template(_trusted(arg)) for arg in query.reader_args(follow=True)]
        python = var("ansible_python_interpreter") or "python3"
        connection = var("ansible_connection") or constants.DEFAULT_TRANSPORT
        become = var("ansible_become", constants.DEFAULT_BECOME)
        become_user = var("ansible_become_user") or constants.DEFAULT_BECOME_USER or "root"
        method = var("ansible_become_method") or constants.DEFAULT_BECOME_METHOD
        if connection in ("local", "ansible.builtin.local"):
            user = getpass.getuser()
        elif connection in ("ssh", "smart", "ansible.builtin.ssh"):
            user = _ssh_option("remote_user", values, templar) or ""
        else:
            raise ConfigError(
                f"logs --follow: {name} uses the {connection} connection; "
                "only ssh and local can be followed (run `irisctl logs` without --follow)"
            )
        command = [python, "-c", _BOOTSTRAP, str(len(READER.read_bytes())), *args]
        if _truthy(become) and user != become_user:
            if method not in ("sudo", "ansible.builtin.sudo"):
                raise ConfigError(f"logs --follow: {name} becomes root with {method}, not sudo")
            command = ["sudo", "-n", "-u", become_user, "--", *command]
        if connection in ("local", "ansible.builtin.local"):
            streams.append(HostStream(name, command))
            continue
        address = _ssh_option("host", values, templar) or name
        ssh = [_ssh_option("ssh_executable", values, templar) or "ssh", "-T"]
        ssh += ["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
        ssh += ["-o", f"ConnectTimeout={_ssh_option('timeout', values, templar) or 10}"]
        port = _ssh_option("port", values, templar)
        if port:
            ssh += ["-p", str(port)]
        key = _ssh_option("private_key_file", values, templar)
        if key:
            ssh += ["-i", os.path.expanduser(str(key))]
        if user:
            ssh += ["-l", str(user)]
        for option in ("ssh_args", "ssh_common_args", "ssh_extra_args"):
            ssh += _without_control_master(shlex.split(_ssh_option(option, values, templar) or ""))
        remote = " ".join(shlex.quote(part) for part in command)
        streams.append(HostStream(name, [*ssh, str(address), remote]))
    return streams


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y")
    return bool(value)


class _Stream:
    def __init__(self, host: str, proc: subprocess.Popen[bytes]) -> None:
        self.host = host
        self.proc = proc
        self.pending = b""
        self.errors: list[str] = []


def follow_logs(streams: list[HostStream], on_record: Callable[[dict[str, Any]], None]) -> None:
    """Run every host's reader and pass each record to ``on_record`` as it arrives.

    Returns never on its own: a reader that ends (ssh failed, no log file) raises
    IrisctlError. However it ends (an exception, KeyboardInterrupt, a signal handler
    raising), every process it started is killed before it returns.
    """
    code = READER.read_bytes()
    running: dict[int, _Stream] = {}
    selector = selectors.DefaultSelector()
    try:
        for stream in streams:
            proc = subprocess.Popen(
                stream.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: killed as one, never by a tty
            )
            state = _Stream(stream.host, proc)
            assert proc.stdin and proc.stdout and proc.stderr
            running[proc.stdout.fileno()] = state
            running[proc.stderr.fileno()] = state
            selector.register(proc.stdout, selectors.EVENT_READ, "out")
            selector.register(proc.stderr, selectors.EVENT_READ, "err")
            # stdin stays open: the reader runs until it ends (when this process goes away)
            proc.stdin.write(code)
            proc.stdin.flush()
        while True:
            for key, _mask in selector.select():
                state = running[key.fd]
                data = os.read(key.fd, 1 << 16)
                if key.data == "err":
                    if data:
                        state.errors += data.decode("utf-8", "replace").splitlines()
                        state.errors = state.errors[-20:]
                        continue
                    selector.unregister(key.fileobj)
                    continue
                if not data:
                    _raise_ended(state)
                lines = (state.pending + data).split(b"\n")
                state.pending = lines.pop()
                for line in lines:
                    raw = parse_log_record(line.decode("utf-8", "replace"))
                    if raw is not None:
                        on_record(host_record(state.host, raw))
    finally:
        selector.close()
        _stop({id(s.proc): s.proc for s in running.values()}.values())


def _raise_ended(state: _Stream) -> None:
    try:
        rc = state.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        rc = None
    assert state.proc.stderr is not None
    with contextlib.suppress(OSError, ValueError):
        state.errors += state.proc.stderr.read().decode("utf-8", "replace").splitlines()
    errors = [line for line in state.errors if line.strip()]
    reason = errors[-1] if errors else f"exit status {rc}"
    raise IrisctlError(f"logs --follow on {state.host} ended: {reason}", details=errors[-6:-1])


def _stop(procs: Any) -> None:
    """Kill each reader's whole process group (ssh, or the reader and its journalctl)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
