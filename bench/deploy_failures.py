"""Failed-deploy and deploy-lock benchmark on the local sandbox (run by hand, as root; never
in the test suite).

    .venv/bin/python bench/deploy_failures.py [--requests-threads 4] [--keep]

Measures, in one run on one sandbox host, side by side:
  1. a good deploy: `irisctl deploy --from` a prebuilt release B (the play alone), wall time;
  2. for each broken release in irisctl.sandbox.broken_releases (fails at import, workers
     die, never answers): `irisctl deploy --from` it, wall time, and the play's own
     `seconds_to_rollback` (from the switch until the previous release is healthy again),
     with HTTPS requests through nginx running meanwhile (health + a cached analysis), counting
     any that failed (goal: 0);
  3. the deploy lock: time until `irisctl deploy` is refused while another deploy holds the lock,
     and two `irisctl deploy` started at the same instant (exit codes, and the time until the
     loser was refused).
Uses the running sandbox when there is one, else brings one up and removes it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cli"))

from deploy_bench import load, one_host_sandbox  # noqa: E402
from irisctl.build import build_wheelhouse  # noqa: E402
from irisctl.errors import EXIT_LOCKED  # noqa: E402
from irisctl.sandbox import hosts, stack  # noqa: E402
from irisctl.sandbox.broken_releases import BREAKAGES, build_broken_release  # noqa: E402
from irisctl.sandbox.hosts import sandbox_ca_bundle  # noqa: E402

IRISCTL = str(Path(sys.executable).parent / "irisctl")


def deploy(env: dict[str, str], wheelhouse: Path) -> tuple[int, float, dict]:
    started = time.monotonic()
    done = subprocess.run(
        [IRISCTL, "deploy", "--from", str(wheelhouse), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    try:
        data = json.loads(done.stdout)
    except ValueError:
        data = {"stderr": done.stderr.strip()[-500:]}
    return done.returncode, elapsed, data


def under_load(host: hosts.Host, threads: int, action):  # type: ignore[no-untyped-def]
    """Run ``action()`` while requests go through nginx; (its result, the load's counts)."""
    stop = threading.Event()
    counts: dict = {}
    loader = threading.Thread(
        target=lambda: counts.update(load(host, sandbox_ca_bundle(), stop, threads))
    )
    loader.start()
    try:
        return action(), counts
    finally:
        stop.set()
        loader.join()


def race(env: dict[str, str], wheelhouse: Path) -> list[tuple[int, float]]:
    argv = [IRISCTL, "deploy", "--from", str(wheelhouse), "--json"]
    started = time.monotonic()
    racers = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    outcomes: list[tuple[int, float] | None] = [None, None]
    while None in outcomes:  # each racer's own exit time, whichever ends first
        for index, racer in enumerate(racers):
            if outcomes[index] is None and racer.poll() is not None:
                outcomes[index] = (racer.returncode, round(time.monotonic() - started, 1))
        time.sleep(0.05)
    return [outcome for outcome in outcomes if outcome is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests-threads", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="leave a sandbox we started up")
    args = parser.parse_args()
    with one_host_sandbox(keep=args.keep) as (info, _fresh):
        for row in measure(info, args.requests_threads):
            print(json.dumps(row))


def measure(info: stack.SandboxInfo, threads: int) -> list[dict]:
    host = info.hosts[0]
    env = {**os.environ, "IRISCTL_INVENTORY": str(info.inventory)}
    stamp = time.strftime("%H%M%S")
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="deploy-failures-"))
    good_a = build_wheelhouse(work / "a", version=f"8.0.{stamp}").path
    good_b = build_wheelhouse(work / "b", version=f"8.1.{stamp}").path
    subprocess.run([IRISCTL, "provision", "--from", str(good_a)], env=env, check=True)

    (code, seconds, _data), counts = under_load(host, threads, lambda: deploy(env, good_b))
    rows.append(
        {"row": "good deploy of release B (--from, play only)", "exit": code,
         "wall_s": round(seconds, 1), "requests": counts.get("ok", 0) + counts.get("failed", 0),
         "failed_requests": counts.get("failed")}
    )  # fmt: skip
    for index, breakage in enumerate(BREAKAGES):
        broken = build_broken_release(work / breakage, f"8.2.{index}{stamp}", breakage).path
        (code, seconds, data), counts = under_load(
            host, threads, lambda broken=broken: deploy(env, broken)
        )
        rows.append(
            {"row": f"broken release ({breakage}), detected + rolled back", "exit": code,
             "wall_s": round(seconds, 1), "gate_failure": data.get("failure"),
             "switch_to_rolled_back_s": data.get("seconds_to_rollback"),
             "requests": counts.get("ok", 0) + counts.get("failed", 0),
             "failed_requests": counts.get("failed"), "errors": counts.get("errors")}
        )  # fmt: skip

    lock = json.dumps({"holder": "bench@elsewhere", "since": "2026-01-01T00:00:00Z"})
    ssh = hosts.ssh_command(host, "root")
    subprocess.run([*ssh, f"echo '{lock}' > /var/lib/iris/deploy.lock"], check=True)
    code, seconds, _data = deploy(env, good_a)
    subprocess.run([*ssh, "rm -f /var/lib/iris/deploy.lock"], check=True)
    rows.append(
        {"row": "deploy refused by a held lock", "exit": code, "wall_s": round(seconds, 1),
         "refused": code == EXIT_LOCKED}
    )  # fmt: skip
    outcomes = race(env, good_a)
    rows.append(
        {"row": "two deploys started together (exit, s after start)", "outcomes": outcomes,
         "exactly_one_proceeded": sorted(c for c, _ in outcomes) == [0, EXIT_LOCKED]}
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
