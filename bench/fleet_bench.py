"""Fleet benchmark on a fleet sandbox (run by hand, as root; never in the test suite).

    .venv/bin/python bench/fleet_bench.py [--seconds 10] [--connections 32] [--rounds 2]

Brings up `irisctl sandbox up --hosts 2` (two app hosts, a Redis cache store, an HAProxy load
balancer), `irisctl provision`s release A, then measures in one run:
  1. cache-hit req/s through the balancer with both app hosts in its pool vs one (the other
     drained to maint with the load_balancer role's own drain entry point), alternating 2/1 for
     --rounds rounds: wrk, POST /api/iris/analyze of one cached source, TLS, --connections.
  2. rolling deploy time: `irisctl deploy --from B` across both hosts, then `irisctl --limit
     <first> deploy --from C` on one host of the same fleet (each drains and re-enables).
Removes the sandbox afterwards. Every host shares this machine's cores: a second host adds
workers, not CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cli"))

from irisctl.build import build_wheelhouse  # noqa: E402
from irisctl.inventory import sandbox_inventory  # noqa: E402
from irisctl.public import https_request  # noqa: E402
from irisctl.sandbox import hosts, stack  # noqa: E402
from irisctl.sandbox.balancer_member import member_play  # noqa: E402

IRISCTL = str(Path(sys.executable).parent / "irisctl")
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
API_KEY = "sandbox-key"
SOURCE = {
    "filename": "bench.py",
    "language": "python",
    "source_code": "def hot(x):\n    return x\n",
}


def run(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return time.monotonic() - started


def member(env: dict[str, str], work: Path, host: str, entry: str) -> None:
    """The load_balancer role's drain/enable entry point for ``host``, delegated to the
    balancer as a deploy runs it."""
    play = member_play(entry, host)
    path = work / f"member-{entry}.yml"
    path.write_text(json.dumps(play))  # JSON is YAML
    run([PLAYBOOK, "-i", str(sandbox_inventory()), str(path)], env)


def hits(balancer: hosts.Host, seconds: int, connections: int) -> float:
    """wrk req/s of cache hits through the balancer (every answer must be 200)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(json.dumps(SOURCE))}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["x-api-key"] = "{API_KEY}"\n'
            f'wrk.headers["Host"] = "{balancer.fqdn}"\n'
        )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            script.name,
            f"https://{balancer.ip}/api/iris/analyze",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        sys.exit(f"{bad.group(1)} answers through the balancer were not 200:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if stack.sandbox_status() is not None:
        sys.exit("a sandbox is up: `irisctl sandbox down` first (this bench brings its own)")
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    release = {v: build_wheelhouse(work / v, version=v).path for v in ("7.0.0", "7.0.1", "7.0.2")}
    env = dict(os.environ, HOME=str(work), XDG_CACHE_HOME=str(work / ".cache"))
    env.pop("IRISCTL_INVENTORY", None)
    rows: list[tuple[str, str]] = []
    try:
        run([IRISCTL, "sandbox", "up", "--hosts", "2"], env)
        info = stack.sandbox_status()
        assert info is not None and info.balancer is not None
        first, second = (h.name for h in info.hosts)
        run([IRISCTL, "provision", "--from", str(release["7.0.0"])], env)
        ca = hosts.sandbox_ca_bundle()
        status, _ = https_request(
            info.balancer.fqdn,
            info.balancer.ip,
            "POST",
            "/api/iris/analyze",
            body=json.dumps(SOURCE).encode(),
            headers={"x-api-key": API_KEY, "content-type": "application/json"},
            ca_bundle=ca,
            timeout=60,
        )
        assert status == 200, status
        two, one = [], []
        for _ in range(args.rounds):
            two.append(hits(info.balancer, args.seconds, args.connections))
            member(env, work, second, "drain")
            one.append(hits(info.balancer, args.seconds, args.connections))
            member(env, work, second, "enable")
        rows.append(
            (
                "cache hits through the balancer, 2 app hosts (req/s, median)",
                f"{statistics.median(two):.0f}  (rounds: {', '.join(f'{v:.0f}' for v in two)})",
            )
        )
        rows.append(
            (
                "cache hits through the balancer, 1 app host (req/s, median)",
                f"{statistics.median(one):.0f}  (rounds: {', '.join(f'{v:.0f}' for v in one)})",
            )
        )
        rows.append(
            ("ratio 2 hosts / 1 host", f"{statistics.median(two) / statistics.median(one):.2f}x")
        )
        both = run([IRISCTL, "deploy", "--from", str(release["7.0.1"])], env)
        single = run([IRISCTL, "--limit", first, "deploy", "--from", str(release["7.0.2"])], env)
        rows.append(("rolling deploy, 2 hosts (irisctl deploy, s)", f"{both:.1f}"))
        rows.append(("rolling deploy, 1 host of the fleet (irisctl --limit, s)", f"{single:.1f}"))
        rows.append(("ratio 2 hosts / 1 host", f"{both / single:.2f}x"))
    finally:
        subprocess.run([IRISCTL, "sandbox", "down"], env=env, capture_output=True)
    width = max(len(name) for name, _ in rows)
    load = os.getloadavg()[0]
    print(f"fleet bench, wrk -t2 -c{args.connections} -d{args.seconds}s, load {load:.1f}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
