"""AWS provisioning benchmark: wall times of `irisctl aws ...` (run by hand; never in the tests).

    .venv/bin/python bench/aws_bench.py              # resources only: moto on loopback
    .venv/bin/python bench/aws_bench.py --converge   # also up/down with a sandbox host (root)

Every row is one `irisctl` command run as the operator runs it, timed from start to exit, with
every AWS call going to moto in server mode (what it costs here is Ansible's module runs and
moto's answers; real AWS adds instance boot time, about a minute, which moto does not have).

Rows without --converge, one deployment on a moto started here (loopback):
  up --resources-only (empty account) | up --resources-only again (no change) | plan | status |
  down --yes --skip-backup | down --all --yes --skip-backup
Rows with --converge, a second deployment on the sandbox's moto whose instance is a sandbox
host (irisctl.sandbox.aws_standin; the host is fresh when the sandbox is started here):
  up (resources + converge + deploy + restore + health) | up again | down --yes (backup first) |
  down --all --yes
Cache backup and restore of a 10,000-entry cache: bench/cache_backup_bench.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cli"))
sys.path.insert(0, str(ROOT / "bench"))

from irisctl.sandbox.aws_standin import (  # noqa: E402
    deployment_inventory,
    moto_environment,
    stand_in_inventory,
)

IRISCTL = str(Path(sys.executable).parent / "irisctl")
SECRET = "sk-bench-not-a-real-key"


def timed(env: dict[str, str], inventory: Path, *args: str) -> tuple[float, dict]:
    started = time.monotonic()
    done = subprocess.run(
        [IRISCTL, "-i", str(inventory), *args, "--json"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"irisctl {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout)


@contextlib.contextmanager
def loopback_moto() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("moto did not start")
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def row(label: str, seconds: float, note: str = "") -> None:
    print(f"  {label:<52} {seconds:7.1f} s  {note}")


def resources_only(workdir: Path) -> None:
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    inventory = deployment_inventory(
        workdir / "inventory",
        "iris-bench",
        aws_instance_ssh_public_key_file=f"{key}.pub",
        aws_network_ssh_cidr="198.51.100.7/32",
    )
    with loopback_moto() as url:
        env = {**moto_environment(dict(os.environ), url), "OPENAI_API_KEY": SECRET}
        print("resources only (moto on loopback, deployment iris-bench):")
        seconds, data = timed(env, inventory, "aws", "up", "--resources-only")
        row("aws up --resources-only (empty account)", seconds, f"changed={data['changed']}")
        seconds, data = timed(env, inventory, "aws", "up", "--resources-only")
        row("aws up --resources-only (second, no change)", seconds, f"changed={data['changed']}")
        seconds, data = timed(env, inventory, "aws", "plan")
        row("aws plan (nothing to do)", seconds, f"changed={data['changed']}")
        seconds, _ = timed(env, inventory, "aws", "status")
        row("aws status", seconds)
        seconds, data = timed(env, inventory, "aws", "down", "--yes", "--skip-backup")
        row("aws down --yes --skip-backup", seconds, f"removed={len(data['removed'])}")
        seconds, data = timed(env, inventory, "aws", "down", "--all", "--yes", "--skip-backup")
        row("aws down --all --yes --skip-backup", seconds, f"removed={len(data['removed'])}")


def with_converge(workdir: Path, keep: bool) -> None:
    from deploy_bench import one_host_sandbox
    from irisctl.sandbox.hosts import sandbox_ca_bundle

    with one_host_sandbox(keep) as (info, fresh):
        host = info.hosts[0]
        inventory = stand_in_inventory(workdir / "standin", "iris-bench-standin", host)
        env = {
            **moto_environment(dict(os.environ)),
            "OPENAI_API_KEY": SECRET,
            "IRISCTL_CA_BUNDLE": sandbox_ca_bundle() or "",
        }
        env.pop("IRISCTL_INVENTORY", None)
        state = "fresh" if fresh else "already converged"
        print(f"with converge (sandbox moto; {host.name} stands in for the instance, {state}):")
        up = ("aws", "up", "--skip-dns-check")
        seconds, data = timed(env, inventory, *up)
        row("aws up (resources, converge, deploy, health)", seconds, _up_note(data))
        seconds, data = timed(env, inventory, *up)
        row("aws up again", seconds, _up_note(data))
        seconds, data = timed(env, inventory, "aws", "down", "--yes")
        entries = sum(h["entries"] for h in (data.get("backup") or {}).get("hosts", []))
        row("aws down --yes (cache backup first)", seconds, f"backed up {entries} entries")
        seconds, data = timed(env, inventory, "aws", "down", "--all", "--yes", "--skip-backup")
        row("aws down --all --yes --skip-backup", seconds, f"removed={len(data['removed'])}")


def _up_note(data: dict) -> str:
    timings = data.get("timings", {})
    return (
        f"changed={data['changed']} (resources {timings.get('resources_seconds')} s,"
        f" converge {timings.get('converge_seconds')} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--converge", action="store_true", help="also up/down with a host")
    parser.add_argument("--keep", action="store_true", help="keep a sandbox started here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aws-bench-") as tmp:
        resources_only(Path(tmp))
        if args.converge:
            with_converge(Path(tmp), args.keep)


if __name__ == "__main__":
    main()
