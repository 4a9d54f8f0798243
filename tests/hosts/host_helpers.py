"""Helpers for the real-host tests: run playbooks, talk to hosts through nginx, build releases."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from irisctl.build import Wheelhouse, build_wheelhouse
from irisctl.paths import project_root
from irisctl.sandbox.broken_releases import build_broken_release
from irisctl.sandbox.hosts import Host
from irisctl.sandbox.stack import SandboxInfo

V1, V2 = "1.0.0", "1.1.0"
# Broken releases, one per way a release fails its health gate (rolled back automatically).
BROKEN, DYING, HANGING = "1.2.0", "1.2.1", "1.2.2"
BREAKAGES = {BROKEN: "fails-at-import", DYING: "workers-die", HANGING: "never-answers"}
# One converge for the whole run (site.yml on every host), then one host per story so no test
# sees the state another left behind: test_lifecycle, test_edge and test_irisctl (driven only
# through the console script) each work on their own host.
LIFECYCLE_HOST, EDGE_HOST, IRISCTL_HOST = 0, 1, 2  # indexes into SandboxInfo.hosts
HOST_COUNT = 3
# The hosts test_converge verifies one by one (all hosts are converged alike).
VERIFIED_HOSTS = (LIFECYCLE_HOST, EDGE_HOST)
API_KEY = "sandbox-key"  # inventory/sandbox/group_vars/iris.yml: service_api_key
ANSIBLE_PLAYBOOK = Path(os.environ.get("VIRTUAL_ENV", project_root() / ".venv")) / "bin"


@dataclass
class PlaybookRun:
    """One ansible-playbook run, with the per-host stats of its recap."""

    playbook: str
    rc: int
    stats: dict[str, dict[str, int]]
    output: str
    seconds: float
    log: Path
    messages: list[str] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(host.get(key, 0) for host in self.stats.values())

    def explain(self) -> str:
        return f"{self.playbook} rc={self.rc} stats={self.stats} (log: {self.log})\n" + "\n".join(
            self.messages[-5:]
        )


RECAP_RE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.MULTILINE)
FATAL_RE = re.compile(
    r"^(?:fatal|failed): \[([^\]]+)\].*?"
    r"(?=^TASK \[|^RUNNING HANDLER|^PLAY RECAP|^NO MORE HOSTS|\Z)",
    re.MULTILINE | re.DOTALL,
)


def parse_recap(stdout: str) -> dict[str, dict[str, int]]:
    """Per-host counters of the PLAY RECAP (ok, changed, unreachable, failed, ...)."""
    recap = stdout[stdout.rfind("PLAY RECAP") :] if "PLAY RECAP" in stdout else ""
    stats = {}
    for host, counters in RECAP_RE.findall(recap):
        stats[host] = {k: int(v) for k, v in (c.split("=") for c in counters.split())}
    return stats


def run_playbook(
    name: str,
    inventory: Path,
    log_dir: Path,
    limit: str | None = None,
    timeout: float = 900,
    check: bool = False,
    **extra_vars: object,
) -> PlaybookRun:
    """``ansible-playbook playbooks/NAME`` from the repository root (so ansible.cfg applies)."""
    ansible = shutil.which("ansible-playbook", path=str(ANSIBLE_PLAYBOOK)) or "ansible-playbook"
    argv = [ansible, "-i", str(inventory), f"playbooks/{name}"]
    if limit:
        argv += ["--limit", limit]
    if check:
        argv += ["--check", "--diff"]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    started = time.monotonic()
    done = subprocess.run(
        argv, cwd=project_root(), env=env, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.monotonic() - started
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{int(time.time() * 1000)}-{name.replace('.yml', '')}.log"
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    messages = [m.group(0).strip() for m in FATAL_RE.finditer(done.stdout)]
    messages = [m for m in messages if "...ignoring" not in m]
    return PlaybookRun(
        playbook=name,
        rc=done.returncode,
        stats=parse_recap(done.stdout),
        output=done.stdout,
        seconds=seconds,
        log=log,
        messages=messages or done.stderr.strip().splitlines()[-5:],
    )


# ------------------------------------------------------------------- through nginx ---
@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str
    headers: str

    def json(self) -> dict:
        return json.loads(self.body)


def https(
    host: Host,
    path: str,
    cafile: Path,
    *,
    method: str = "GET",
    body: dict | None = None,
    scheme: str = "https",
    timeout: float = 60,
) -> HttpAnswer:
    """A request to the host's public name through nginx, TLS verified against ``cafile``."""
    port = 443 if scheme == "https" else 80
    argv = [
        "curl",
        "-sS",
        "--max-time",
        str(timeout),
        "--resolve",
        f"{host.fqdn}:{port}:{host.ip}",
        "--cacert",
        str(cafile),
        "-D",
        "-",
        "-X",
        method,
        "-H",
        f"x-api-key: {API_KEY}",
    ]
    if body is not None:
        argv += ["-H", "content-type: application/json", "--data-binary", json.dumps(body)]
    argv.append(f"{scheme}://{host.fqdn}{path}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
    if done.returncode != 0:
        return HttpAnswer(status=-1, body=done.stderr.strip(), headers="")
    head, _, payload = done.stdout.partition("\n\n")  # text mode turned \r\n into \n
    status = int(head.split()[1]) if head.startswith("HTTP/") else -1
    return HttpAnswer(status=status, body=payload, headers=head)


def wait_healthy(host: Host, cafile: Path, version: str, timeout: float = 60) -> HttpAnswer:
    deadline = time.monotonic() + timeout
    answer = HttpAnswer(-1, "", "")
    while time.monotonic() < deadline:
        answer = https(host, "/api/iris/health", cafile, timeout=10)
        if answer.status == 200 and answer.json().get("version") == version:
            return answer
        time.sleep(0.5)
    return answer


def served_certificate(host: Host, cafile: Path) -> dict:
    """The certificate nginx serves for the host's name, verified against ``cafile``."""
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection((host.ip, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host.fqdn) as tls,
    ):
        return tls.getpeercert()


# --------------------------------------------------------------------- collection ---
def mark_host_tests(config: pytest.Config, items: list[pytest.Item], here: Path) -> None:
    """Mark the tests under ``here`` as host tests; where hosts cannot run, one skip line for
    the whole directory instead of one per test."""
    from irisctl.sandbox import hosts

    mine = [item for item in items if here in Path(item.fspath).parents]
    for item in mine:
        item.add_marker(pytest.mark.hosts)
    reason = hosts.unavailable_reason()
    if reason and mine:
        mine[0].add_marker(pytest.mark.skip(reason=f"real test hosts unavailable: {reason}"))
        config.hook.pytest_deselected(items=mine[1:])
        items[:] = [item for item in items if item not in mine[1:]]


# ------------------------------------------------------------------------ releases ---
def build_release(dest: Path, version: str) -> Wheelhouse:
    """A release of the current service tree; the versions in BREAKAGES are broken on purpose."""
    if version in BREAKAGES:
        return build_broken_release(dest, version, BREAKAGES[version])
    return build_wheelhouse(dest, version=version)


@dataclass
class Sandbox:
    info: SandboxInfo
    workdir: Path
    releases: dict[str, Wheelhouse]
    pebble_roots: Path
    timings: dict[str, float] = field(default_factory=dict)
    converges: list[PlaybookRun] = field(default_factory=list)

    @property
    def inventory(self) -> Path:
        return self.info.inventory

    def print_timings(self, what: str) -> None:
        timings = ", ".join(f"{k}={v:.1f}" for k, v in self.timings.items())
        print(f"\n{what} test timings (s): {timings}")

    def play(
        self, name: str, limit: str | None = None, check: bool = False, **extra_vars: object
    ) -> PlaybookRun:
        run = run_playbook(
            name, self.inventory, self.workdir / "logs", limit=limit, check=check, **extra_vars
        )
        self.timings[f"{name} #{len(self.timings) + 1}"] = run.seconds
        return run

    def deploy(self, version: str, limit: str, check: bool = False, **extra: object) -> PlaybookRun:
        return self.play(
            "deploy.yml",
            limit=limit,
            check=check,
            service_wheelhouse_dir=str(self.releases[version].path),
            service_version=version,
            iris_deploy_holder="tests@hosts",
            **extra,
        )


# ------------------------------------------------- two runs sharing the converged hosts ---
# `make test` runs the single-host stories as two pytest runs side by side: the owner brings
# the sandbox up and converges it, then hands the converged Sandbox to the guest run through a
# directory both are given (IRIS_HOSTS_SHARE); each run then works on hosts of its own.
HANDOVER_FILE = "converged.pickle"


def hand_over(share: Path, box: Sandbox | None, error: str | None = None) -> None:
    """Give the guest run the converged sandbox, or the reason there is none."""
    staging = share / f".{HANDOVER_FILE}.{os.getpid()}"
    staging.write_bytes(pickle.dumps({"sandbox": box, "error": error}))
    staging.rename(share / HANDOVER_FILE)  # the guest never reads half a file


def take_over(share: Path, workdir: Path, wait_s: float) -> Sandbox:
    """The owner's converged sandbox (bounded wait), writing its logs to ``workdir``."""
    path, deadline = share / HANDOVER_FILE, time.monotonic() + wait_s
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the owner run handed over no converged sandbox within {wait_s:.0f} s")
        time.sleep(1)
    handed = pickle.loads(path.read_bytes())
    if handed["error"]:
        pytest.fail(f"the owner run could not converge the sandbox: {handed['error']}")
    box: Sandbox = handed["sandbox"]
    box.workdir, box.timings = workdir, {}
    return box
