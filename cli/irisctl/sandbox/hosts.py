"""Local systemd hosts for the sandbox and the host tests, driven through ``testhost.sh``.

The shell script does the privileged work (mmdebstrap, overlay mounts, cgroups, nspawn,
the bridge, the apt proxy, pebble); this module gives it a small typed surface.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("testhost.sh")
STATE_DIR = Path(os.environ.get("TESTHOST_HOME", "/var/lib/iris-sandbox"))
BRIDGE_ADDRESS = os.environ.get("TESTHOST_GW", "10.231.0.1")
DOMAIN = os.environ.get("TESTHOST_DOMAIN", "test")
PEBBLE_DIRECTORY = f"https://{BRIDGE_ADDRESS}:14000/dir"
PEBBLE_MANAGEMENT = "https://127.0.0.1:15000"
REQUIRED_COMMANDS = (
    "systemd-nspawn",
    "mmdebstrap",
    "apt-cacher-ng",
    "pebble",
    "pebble-challtestsrv",
    "ssh",
    "ip",
    "curl",
    "openssl",
)


class SandboxError(RuntimeError):
    """A sandbox host operation failed; the message says which and why."""


@dataclass(frozen=True)
class Host:
    name: str
    ip: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{DOMAIN}"


def unavailable_reason() -> str | None:
    """Why real hosts cannot run on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "real test hosts need root (systemd-nspawn, overlay mounts, a bridge)"
    missing = [cmd for cmd in REQUIRED_COMMANDS if shutil.which(cmd) is None]
    if missing:
        return f"real test hosts need {', '.join(missing)} (run `make install`)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "real test hosts need a cgroup file system at /sys/fs/cgroup"
    return None


def key_path() -> Path:
    return STATE_DIR / "keys" / "id_ed25519"


def _run(*args: str, timeout: float = 300) -> str:
    try:
        done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SandboxError(f"testhost {' '.join(args)} timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
        tail = errors[-1] if errors else " | ".join(done.stderr.strip().splitlines()[-3:])
        raise SandboxError(f"testhost {' '.join(args)} failed: {tail}")
    return done.stdout


def build() -> None:
    """Build (or reuse) the cached root file system."""
    _run("build", timeout=900)


def up(name: str, ip: str) -> Host:
    _run("up", name, ip, timeout=900)
    return Host(name=name, ip=ip)


def reboot(name: str) -> None:
    """Power ``name`` off cleanly and boot it again on the same disk."""
    _run("reboot", name, timeout=300)


def down(name: str) -> None:
    _run("down", name)


def down_all() -> None:
    _run("down", "--all")


def running() -> list[Host]:
    """The hosts whose systemd-nspawn is alive. A run directory whose nspawn died with the
    process that started it is left out: it is stale, and ``down`` clears it."""
    run_dir = STATE_DIR / "run"
    hosts = []
    for ip_file in sorted(run_dir.glob("*/ip")) if run_dir.is_dir() else []:
        if _nspawn_alive(ip_file.parent / "pid"):
            hosts.append(Host(name=ip_file.parent.name, ip=ip_file.read_text().strip()))
    return hosts


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid``, None when it is gone or a zombie. With the pid it
    names one process for good: a recycled pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return None if fields[0] == "Z" else fields[19]


def _nspawn_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return False
    return comm == "systemd-nspawn" and process_start_time(pid) is not None


def acme_up() -> None:
    """Start pebble (a real ACME server) and its DNS on the bridge; hosts get A records."""
    _run("acme-up")


def acme_down() -> None:
    _run("acme-down")


def acme_api_ca() -> Path:
    """The CA that signed pebble's own HTTPS API certificate (hosts must trust it)."""
    return STATE_DIR / "acme" / "ca.pem"


def pebble_roots() -> str:
    """PEM of pebble's current issuing root (new at every pebble start)."""
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(acme_api_ca()))
    context.check_hostname = False
    with urllib.request.urlopen(f"{PEBBLE_MANAGEMENT}/roots/0", context=context) as resp:
        return resp.read().decode()


def sandbox_ca_bundle() -> str | None:
    """The sandbox's ACME root (pebble makes a new one at every start), written to a file so
    `health` can verify the sandbox host's certificate; None when pebble is not running."""
    try:
        pem = pebble_roots()
    except Exception:  # no pebble, no sandbox: the public check then says why it fails
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "irisctl"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "sandbox-ca.pem"
    path.write_text(pem)
    return str(path)


def ssh_command(host: Host, user: str = "ec2-user") -> list[str]:
    return [
        "ssh",
        "-i",
        str(key_path()),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        f"{user}@{host.ip}",
    ]


def write_inventory(
    path: Path,
    hosts: list[Host],
    group: str = "iris",
    *,
    groups: dict[str, list[Host]] | None = None,
    app_vars: dict[str, str] | None = None,
    app_host_vars: dict[str, str] | None = None,
    all_vars: dict[str, str] | None = None,
) -> Path:
    """An INI inventory: ``hosts`` in ``group`` (with ``app_vars``, and ``app_host_vars`` on
    each host's line, which outrank group_vars files), any further ``groups`` (a fleet's store
    and balancer), and the connection settings every test host needs plus ``all_vars``."""

    def members(name: str, hosts: list[Host], extra: str = "") -> list[str]:
        lines = (f"{h.name} ansible_host={h.ip} iris_domain={h.fqdn}{extra}" for h in hosts)
        return [f"[{name}]", *lines]

    per_host = "".join(f" {key}={value}" for key, value in (app_host_vars or {}).items())
    lines = members(group, hosts, per_host)
    if app_vars:
        lines += ["", f"[{group}:vars]", *(f"{key}={value}" for key, value in app_vars.items())]
    for name, extra in (groups or {}).items():
        if extra:
            lines += ["", *members(name, extra)]
    lines += [
        "",
        "[all:vars]",
        "ansible_user=ec2-user",
        "ansible_become=true",
        "ansible_python_interpreter=/usr/bin/python3",
        f"ansible_ssh_private_key_file={key_path()}",
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        " -o LogLevel=ERROR'",
        # the same for Mitogen (plugins/strategy), which sets ssh's host key option itself
        "ansible_host_key_checking=false",
    ]
    lines += [f"{key}={value}" for key, value in (all_vars or {}).items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
