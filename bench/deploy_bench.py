"""Deploy benchmark on the local sandbox (run by hand, as root; never in the test suite).

    .venv/bin/python bench/deploy_bench.py [--requests-threads 8] [--keep]

Measures, in one run on one sandbox host:
  1. first converge: `irisctl provision` on a fresh host (site.yml + release A)
  2. no-op redeploy: `irisctl deploy` of release A again, once building the wheelhouse and
     once with `--from` the already built one (the play alone)
  3. zero-downtime: a bounded load of HTTPS requests through nginx (health + a cached
     analysis) while `irisctl deploy` ships release B; counts failed requests (goal: 0).
Uses the running sandbox when there is one, else brings one up and removes it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cli"))

from irisctl.public import https_request  # noqa: E402
from irisctl.sandbox import hosts, stack  # noqa: E402
from irisctl.sandbox.hosts import sandbox_ca_bundle  # noqa: E402

IRISCTL = str(Path(sys.executable).parent / "irisctl")
API_KEY = "sandbox-key"
MAX_REQUESTS = 50_000
SOURCE = {"filename": "bench.py", "language": "python", "source_code": "x = 1\n"}


def irisctl(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run([IRISCTL, *args], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"irisctl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def load(host: hosts.Host, ca: str | None, stop: threading.Event, threads: int) -> dict:
    counts = {"ok": 0, "failed": 0}
    errors: dict[str, int] = {}
    lock = threading.Lock()
    body = json.dumps(SOURCE).encode()
    headers = {"Content-Type": "application/json", "x-api-key": API_KEY}

    def worker(index: int) -> None:
        while not stop.is_set():
            with lock:
                if counts["ok"] + counts["failed"] >= MAX_REQUESTS:
                    return
            try:
                if index % 2:
                    status, _ = https_request(host.fqdn, host.ip, ca_bundle=ca, timeout=30)
                else:
                    status, _ = https_request(
                        host.fqdn, host.ip, "POST", "/api/iris/analyze",
                        body=body, headers=headers, ca_bundle=ca, timeout=30,
                    )  # fmt: skip
                reason = None if status == 200 else f"HTTP {status}"
            except Exception as exc:  # every failure counts, whatever it is
                reason = f"{type(exc).__name__}: {str(exc)[:80]}"
            with lock:
                if reason is None:
                    counts["ok"] += 1
                else:
                    counts["failed"] += 1
                    errors[reason] = errors.get(reason, 0) + 1

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i in range(threads):
            pool.submit(worker, i)
    return {**counts, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests-threads", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="leave a sandbox we started up")
    args = parser.parse_args()
    with one_host_sandbox(keep=args.keep) as (info, started_here):
        measure(info, started_here, args.requests_threads)


@contextmanager
def one_host_sandbox(keep: bool = False) -> Iterator[tuple[stack.SandboxInfo, bool]]:
    """The running sandbox, or one brought up here (and removed afterwards unless ``keep``);
    yields it and whether it was started here (its host is then fresh)."""
    reason = hosts.unavailable_reason()
    if reason:
        sys.exit(f"cannot run: {reason}")
    info = stack.sandbox_status()
    started_here = info is None
    if info is None:
        t = time.monotonic()
        info = stack.sandbox_up(1, stack.default_inventory())
        print(f"sandbox up: {time.monotonic() - t:.1f}s")
    try:
        yield info, started_here
    finally:
        if started_here and not keep:
            stack.sandbox_down()


def measure(info: stack.SandboxInfo, started_here: bool, threads: int) -> None:
    host = info.hosts[0]
    env = {**os.environ, "IRISCTL_INVENTORY": str(info.inventory)}
    stamp = time.strftime("%H%M%S")
    version_a, version_b = f"9.0.{stamp}", f"9.1.{stamp}"
    figures: dict[str, object] = {}
    try:
        label = "first converge (provision)" if started_here else "converge (host not fresh)"
        figures[label] = round(irisctl(env, "provision", "--version", version_a), 1)
        figures["no-op redeploy incl. build"] = round(
            irisctl(env, "deploy", "--version", version_a), 1
        )
        wheelhouse = ROOT / "build" / "releases" / version_a
        figures["no-op redeploy, prebuilt (--from)"] = round(
            irisctl(env, "deploy", "--from", str(wheelhouse)), 1
        )
        ca = sandbox_ca_bundle()
        https_request(  # warm the cache so the analysis requests are cheap hits
            host.fqdn, host.ip, "POST", "/api/iris/analyze", body=json.dumps(SOURCE).encode(),
            headers={"Content-Type": "application/json", "x-api-key": API_KEY}, ca_bundle=ca,
        )  # fmt: skip
        stop = threading.Event()
        result: dict = {}
        loader = threading.Thread(target=lambda: result.update(load(host, ca, stop, threads)))
        loader.start()
        time.sleep(1.0)
        figures["deploy of a new version under load"] = round(
            irisctl(env, "deploy", "--version", version_b), 1
        )
        time.sleep(1.0)
        stop.set()
        loader.join()
        figures["requests during deploy"] = result["ok"] + result["failed"]
        figures["failed requests"] = result["failed"]
        if result["errors"]:
            figures["failures by kind"] = result["errors"]
    finally:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
