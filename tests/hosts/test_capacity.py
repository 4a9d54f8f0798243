"""Serving settings on a real host: what the inventory says is what the running gunicorn does.

Works on the irisctl host (not one test_converge verifies) and puts it back before it ends: a
host_vars file next to the sandbox inventory sets the settings, the service role converges,
and the running master's workers and the connections each accepts are counted. The capacity
figures themselves (hundreds in flight, shedding) are measured by bench/capacity_bench.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from host_helpers import ANSIBLE_PLAYBOOK, IRISCTL_HOST, Sandbox, https
from irisctl.paths import project_root
from irisctl.sandbox import hosts
from irisctl.sandbox.hosts import Host

T = TypeVar("T")
WORKERS, THREADS = 1, 3
EXTRA = 2  # analyses beyond what the workers accept: they wait in the socket's queue
# How long the model holds each analysis: the window in which the extra connections must be seen
# queued. 8 s was too short once under a full CI run (five curl TLS handshakes at load 8-11);
# the queued ones still finish well inside https()'s 60 s (two model turns).
MODEL_SECONDS = 16


def root(host: Host, command: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [*hosts.ssh_command(host, "root"), command], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command}: rc={done.returncode} {done.stderr.strip()}"
    return done.stdout


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def converge_service(box: Sandbox, host: Host) -> None:
    """The service role alone on ``host``, with the inventory (and its host_vars) as it is."""
    play = box.workdir / "capacity-service.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Converge the service",
                    "hosts": "iris",
                    "become": True,
                    "roles": ["service"],
                }
            ]
        )  # fmt: skip
    )
    ansible = shutil.which("ansible-playbook", path=str(ANSIBLE_PLAYBOOK)) or "ansible-playbook"
    argv = [ansible, "-i", str(box.inventory), str(play), "--limit", host.name]
    done = subprocess.run(argv, cwd=project_root(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def workers(host: Host) -> int:
    master = root(host, "systemctl show -p MainPID --value iris-backend.service").strip()
    return len(root(host, f"pgrep -P {master} || true").split())


def queued(host: Host) -> int:
    """Connections waiting in the service socket's accept queue (not taken by any worker)."""
    line = root(host, "ss -Hltn 'sport = :8080'").split()
    return int(line[1])


def test_serving_settings_in_host_vars_reach_the_running_gunicorn(converged: Sandbox) -> None:
    box, host = converged, converged.info.hosts[IRISCTL_HOST]
    host_vars = Path(box.inventory).parent / "host_vars" / f"{host.name}.yml"
    host_vars.parent.mkdir(exist_ok=True)
    host_vars.write_text(yaml.safe_dump({"service_workers": WORKERS, "service_threads": THREADS}))
    pool = ThreadPoolExecutor(WORKERS * THREADS + EXTRA)
    try:
        converge_service(box, host)
        conf = root(host, "cat /etc/iris/gunicorn.conf.py")
        assert f"workers = {WORKERS}\n" in conf and f"threads = {THREADS}\n" in conf
        wait_for(lambda: workers(host) == WORKERS, 60, f"{WORKERS} worker(s)")
        wait_for(lambda: https(host, "/api/iris/health", box.pebble_roots).status == 200, 60,
                 "health")  # fmt: skip
        # Slow analyses (distinct, so each one calls the model): each worker takes exactly as
        # many connections as it has threads; the rest wait in the socket's queue.
        bodies = [
            {"filename": "c.py", "language": "python",
             "source_code": f"x = {n}\n# IRIS-STANDIN: delay={MODEL_SECONDS}\n"}
            for n in range(WORKERS * THREADS + EXTRA)
        ]  # fmt: skip
        answers = [
            pool.submit(https, host, "/api/iris/analyze", box.pebble_roots, method="POST", body=b)
            for b in bodies
        ]
        wait_for(lambda: queued(host) == EXTRA, MODEL_SECONDS, f"{EXTRA} queued connections")
        assert [a.result(timeout=120).status for a in answers] == [200] * len(bodies)
    finally:
        pool.shutdown(wait=True)
        host_vars.unlink()
        converge_service(box, host)
    wait_for(lambda: workers(host) == 2, 60, "the service's own 2 workers again")
    conf = root(host, "cat /etc/iris/gunicorn.conf.py")
    assert "workers =" not in conf.split("import *", 1)[1]
