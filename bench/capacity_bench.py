"""Capacity benchmark on one sandbox host, through nginx (run by hand, as root; never in the
test suite).

    .venv/bin/python bench/capacity_bench.py [--in-flight 256] [--burst 1000] [--keep]

Measures, in one run on one sandbox host converged with the deployed configuration (site.yml
and this tree's release, `irisctl provision`), every request over HTTPS through nginx:
  1. ``--in-flight`` distinct analyses at once, the model answering each in 2 s: how many
     succeed, the slowest, the burst's wall time; /api/iris/health every 20 ms meanwhile, each
     on a new TLS connection (from a process of its own, so the burst's client work does not
     delay the probe): p50/p99/max as the probe saw them, and as nginx saw the service answer
     them (upstream_response_time in its access log: without the probe's TLS handshake, which
     competes with the burst's 256 on the same 2 CPUs); the peak summed RSS of the service's
     processes, sampled on the host. Twice after a restart of the service, once every worker
     has said it is ready (the first burst after a start, then the next one), side
     by side: with the deployed configuration, and with its worker start hook switched off
     (threads started on demand, CPython's 5 ms GIL turns: what ran before the hook);
  2. ``--burst`` distinct analyses at once: how many got 200, a JSON 503 with Retry-After
     (shed), any other status, or no answer (cut: reset or EOF; timeout), the burst's wall time,
     the slowest shed answer, and whether the host is healthy afterwards (health 200, no worker
     died, nginx and the service active);
  3. cache hits against a minimal Flask app under the same gunicorn config
     (/etc/iris/gunicorn.conf.py on the host, same bind) side by side: wrk directly on the host
     (127.0.0.1:8080) and from here through nginx (TLS); req/s and the ratio.
Uses the running sandbox when there is one, else brings one up and removes it afterwards.
The load generator is hand-written (asyncio, one connection per request) rather than
aiohttp/httpx: those pool and retry connections and fold a reset, a TLS EOF and a short read
into one exception, and these figures are exactly the count of connections that were cut.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cli"))

from deploy_bench import one_host_sandbox  # noqa: E402
from irisctl.sandbox import hosts  # noqa: E402
from irisctl.sandbox.hosts import Host, sandbox_ca_bundle  # noqa: E402

IRISCTL = str(Path(sys.executable).parent / "irisctl")
API_KEY = "sandbox-key"
MODEL_SECONDS = 2
HEADERS = {"x-api-key": API_KEY, "Content-Type": "application/json"}
# Summed VmRSS of the service's processes (the master and its children) every 100 ms until
# stdin closes.
RSS_SAMPLER = r"""
import re, select, sys, time
master = sys.argv[1]
peak = 0
def tree(pid):
    try:
        children = open("/proc/%s/task/%s/children" % (pid, pid)).read().split()
    except OSError:
        return [pid]
    return [pid] + [p for child in children for p in tree(child)]
while not select.select([sys.stdin], [], [], 0.1)[0]:
    total = 0
    for pid in tree(master):
        try:
            status = open("/proc/%s/status" % pid).read()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        except (OSError, AttributeError):
            pass
    peak = max(peak, total)
print(peak)
"""
MINIMAL_APP = """
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/api/iris/analyze")
def analyze():
    body = request.get_json()
    return jsonify({"success": True, "file_intent": "minimal", "responsibility_blocks": [],
                    "metadata": body.get("metadata") or {}})
"""
MINIMAL_DIR = "/var/lib/iris-bench"
# Hosts have Python, not curl: the status of one POST to the backend, made on the host.
ANSWERS_8080 = (
    'python3 -c "import urllib.request as u; print(u.urlopen(u.Request('
    "'http://127.0.0.1:8080/api/iris/analyze', data=b'{}', "
    "headers={'Content-Type': 'application/json'})).status)\" 2>/dev/null || true"
)


# ----------------------------------------------------------------- load generator ---
@dataclass(frozen=True)
class Target:
    host: str
    port: int = 443
    server_name: str | None = None
    cafile: str | None = None

    def tls(self) -> ssl.SSLContext | None:
        if self.server_name is None:
            return None
        return ssl.create_default_context(cafile=self.cafile)


@dataclass
class Outcome:
    status: int  # 0: no answer
    seconds: float
    failure: str = ""  # cut, timeout, refused
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes] | None:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers and len(body) < int(headers["content-length"]):
        return None  # cut in the middle of the body
    return int(lines[0].split()[1]), headers, body


async def request(
    target: Target, method: str, path: str, body: bytes = b"", timeout: float = 130.0
) -> Outcome:
    """One request on its own connection (``Connection: close``), read to the end."""
    started = time.perf_counter()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {target.server_name or target.host}"]
    lines += ["Connection: close", *(f"{k}: {v}" for k, v in HEADERS.items())]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    writer = None
    try:
        async with asyncio.timeout(timeout):
            context = target.tls()
            reader, writer = await asyncio.open_connection(
                target.host, target.port, ssl=context, server_hostname=target.server_name
            )
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
            raw = await reader.read()
    except TimeoutError:
        return Outcome(0, time.perf_counter() - started, "timeout")
    except ConnectionRefusedError:
        return Outcome(0, time.perf_counter() - started, "refused")
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        return Outcome(0, time.perf_counter() - started, "cut")
    finally:
        if writer is not None:
            writer.close()
    parsed = _parse(raw)
    if parsed is None:
        return Outcome(0, time.perf_counter() - started, "cut")
    return Outcome(parsed[0], time.perf_counter() - started, "", parsed[1], parsed[2])


async def burst(target: Target, bodies: Sequence[bytes]) -> tuple[list[Outcome], float]:
    started = time.perf_counter()
    outcomes = await asyncio.gather(
        *(request(target, "POST", "/api/iris/analyze", body) for body in bodies)
    )
    return list(outcomes), time.perf_counter() - started


PROBE_INTERVAL_S = 0.02  # ~150 probes in a 3 s burst: its p99 is not just its slowest probe


def _probe(target: Target, tag: str, stop, results) -> None:  # a process of its own
    """Health every PROBE_INTERVAL_S, each on a new TLS connection, each request named by
    ``?probe=TAG-N`` so that nginx's own log line of it can be found (``service_times``)."""

    async def run() -> list[tuple[float, float, int, str]]:
        out = []
        while not stop.is_set():
            at = time.time()
            name = f"{tag}-{len(out)}"
            outcome = await request(target, "GET", f"/api/iris/health?probe={name}", timeout=30)
            out.append((at, outcome.seconds, outcome.status, name))
            await asyncio.sleep(PROBE_INTERVAL_S)
        return out

    results.put(asyncio.run(run()))


def service_times(host: Host, tag: str) -> dict[str, float]:
    """How long nginx waited for the service's answer to each probe (upstream_response_time,
    from its access log): the probe's time without its TLS handshake and client side."""
    lines = root(host, f"grep -F 'probe={tag}-' /var/log/nginx/access.log || true")
    found = re.findall(r"probe=(\S+) .* urt=([\d.]+)", lines)
    return {name: float(seconds) * 1000 for name, seconds in found}


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def bodies(count: int, tag: str) -> list[bytes]:
    """Distinct sources (each one a model call), answered by the stand-in in MODEL_SECONDS."""
    made = []
    for n in range(count):
        source = "\n".join(f"def f_{tag}_{n}_{i}(x):\n    return x + {i}\n" for i in range(6))
        source += f"# IRIS-STANDIN: delay={MODEL_SECONDS}\n"
        made.append(
            json.dumps({"filename": "c.py", "language": "python", "source_code": source}).encode()
        )
    return made


# ------------------------------------------------------------------------ the host ---
def root(host: Host, command: str, timeout: float = 120, stdin: str | None = None) -> str:
    done = subprocess.run(
        [*hosts.ssh_command(host, "root"), command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command}: rc={done.returncode} {done.stderr.strip()}")
    return done.stdout


def worker_deaths(host: Host) -> int:
    out = root(
        host, "grep -cE 'Worker \\(pid:[0-9]+\\) (was sent|exited)' /var/log/iris/error.log || true"
    )
    return int(out.strip() or 0)


def healthy(host: Host, target: Target) -> bool:
    answer = asyncio.run(request(target, "GET", "/api/iris/health", timeout=10))
    units = root(host, "systemctl is-active iris-backend.service nginx.service || true").split()
    return answer.status == 200 and units == ["active", "active"]


def in_flight(host: Host, target: Target, count: int) -> dict:
    master = root(host, "systemctl show -p MainPID --value iris-backend.service").strip()
    sampler = subprocess.Popen(
        [*hosts.ssh_command(host, "root"), f"python3 -c '{RSS_SAMPLER}' {master}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stop, results = multiprocessing.Event(), multiprocessing.Queue()
    tag = f"b{time.time_ns()}"
    prober = multiprocessing.Process(target=_probe, args=(target, tag, stop, results))
    prober.start()
    time.sleep(0.5)
    started = time.time()
    outcomes, wall = asyncio.run(burst(target, bodies(count, f"flight{int(started)}")))
    ended = time.time()
    time.sleep(0.2)
    stop.set()
    probes = results.get()
    prober.join()
    peak_kb = int(sampler.communicate("", timeout=30)[0].strip())
    during = [seconds * 1000 for at, seconds, _status, _name in probes if started <= at <= ended]
    upstream = service_times(host, tag)
    served = [upstream[name] for at, _s, _st, name in probes if started <= at <= ended]
    statuses = Counter(o.status or o.failure for o in outcomes)
    return {
        "analyses": count,
        "ok": statuses.get(200, 0),
        "other": {str(k): v for k, v in statuses.items() if k != 200},
        "wall_s": round(wall, 2),
        "analysis_max_s": round(max(o.seconds for o in outcomes), 2),
        "health_probes": len(during),
        "health_not_200": sum(
            1 for at, _s, st, _n in probes if started <= at <= ended and st != 200
        ),
        # as the probe saw it: a new TLS connection each, on CPUs the burst's client shares
        "health_p50_ms": round(percentile(during, 50), 1),
        "health_p99_ms": round(percentile(during, 99), 1),
        "health_max_ms": round(max(during), 1),
        # as nginx saw the service answer it
        "health_service_p50_ms": round(percentile(served, 50), 1),
        "health_service_p99_ms": round(percentile(served, 99), 1),
        "health_service_max_ms": round(max(served), 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


HOST_CONF = "/etc/iris/gunicorn.conf.py"
# Appended to the host's config for the comparison row, then the file is put back.
WITHOUT_WORKER_START_HOOK = (
    "\n# bench/capacity_bench.py: the worker start hook switched off\n"
    "def post_worker_init(worker):\n    pass\n"
)


def restart_service(host: Host, target: Target) -> None:
    """Restart, then wait until every worker has said it is ready (it has loaded the app and
    run its start hook) and health answers 200."""
    logged = int(root(host, "grep -c . /var/log/iris/error.log || true").strip() or 0)
    root(host, "systemctl restart iris-backend.service")
    deadline = time.monotonic() + 90
    ready_lines = f"tail -n +{logged + 1} /var/log/iris/error.log | grep -c ' ready: ' || true"
    while (
        int(root(host, ready_lines).strip() or 0) < max(workers_running(host), 1)
        or asyncio.run(request(target, "GET", "/api/iris/health", timeout=5)).status != 200
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the service did not come back after a restart")
        time.sleep(0.5)


def workers_running(host: Host) -> int:
    master = root(host, "systemctl show -p MainPID --value iris-backend.service").strip()
    return len(root(host, f"pgrep -P {master} || true").split())


def after_a_start(host: Host, target: Target, count: int) -> dict:
    restart_service(host, target)
    return {
        "first_burst": in_flight(host, target, count),
        "next_burst": in_flight(host, target, count),
    }


def in_flight_side_by_side(host: Host, target: Target, count: int) -> dict:
    figures = {"deployed configuration": after_a_start(host, target, count)}
    root(host, f"cp -p {HOST_CONF} {HOST_CONF}.bench && cat >> {HOST_CONF}",
         stdin=WITHOUT_WORKER_START_HOOK)  # fmt: skip
    try:
        figures["worker start hook off"] = after_a_start(host, target, count)
    finally:
        root(host, f"mv {HOST_CONF}.bench {HOST_CONF}")
        restart_service(host, target)
    return figures


def overload(host: Host, target: Target, count: int) -> dict:
    deaths_before = worker_deaths(host)
    outcomes, wall = asyncio.run(burst(target, bodies(count, f"burst{int(time.time())}")))
    kinds: Counter[str] = Counter()
    shed_seconds = []
    for outcome in outcomes:
        if outcome.status == 503:
            try:
                answer = json.loads(outcome.body)
            except ValueError:
                answer = {}
            honest = answer.get("success") is False and "retry-after" in outcome.headers
            kinds["503 JSON + Retry-After" if honest else "503 other"] += 1
            shed_seconds.append(outcome.seconds)
        else:
            kinds[str(outcome.status) if outcome.status else outcome.failure] += 1
    time.sleep(1)
    return {
        "requests": count,
        "answers": dict(kinds),
        "wall_s": round(wall, 2),
        "shed_p50_s": round(percentile(shed_seconds, 50), 3) if shed_seconds else None,
        "shed_max_s": round(max(shed_seconds), 3) if shed_seconds else None,
        "ok_max_s": round(max((o.seconds for o in outcomes if o.status == 200), default=0), 2),
        "worker_deaths": worker_deaths(host) - deaths_before,
        "healthy_after": healthy(host, target),
    }


# ------------------------------------------------------------------ cache hits ---
HOT = json.dumps(
    {"filename": "hot.py", "language": "python", "source_code": "def hot(x):\n    return x\n"}
)


def wrk_script(path: Path) -> Path:
    path.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(HOT)}\n'
        + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in HEADERS.items())
    )
    return path


def req_per_s(wrk_output: str) -> tuple[float, int]:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk_output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk_output)
    return rate, int(non_2xx.group(1)) if non_2xx else 0


def hits(host: Host, seconds: int, connections: int) -> dict:
    script = wrk_script(Path(tempfile.mkdtemp()) / "post.lua")
    root(host, f"mkdir -p {MINIMAL_DIR}")
    root(host, f"cat > {MINIMAL_DIR}/post.lua", stdin=script.read_text())
    root(
        host, f"cat > {MINIMAL_DIR}/minimal_app.py && chmod 0644 {MINIMAL_DIR}/*", stdin=MINIMAL_APP
    )
    root(host, "command -v wrk || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk", 300)
    wrk = f"wrk -t2 -c{connections} -d{seconds}s"

    def measure() -> dict:
        direct = root(
            host, f"{wrk} -s {MINIMAL_DIR}/post.lua http://127.0.0.1:8080/api/iris/analyze"
        )
        edge = subprocess.run(
            [*wrk.split(), "-s", str(script), f"https://{host.ip}/api/iris/analyze"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        (direct_rate, direct_bad), (edge_rate, edge_bad) = req_per_s(direct), req_per_s(edge)
        return {"direct_req_s": direct_rate, "direct_non_2xx": direct_bad,
                "nginx_req_s": edge_rate, "nginx_non_2xx": edge_bad}  # fmt: skip

    # The service: one miss first, then every request is a cache hit.
    warm = Target(host.ip, 443, host.fqdn, sandbox_ca_bundle())
    if asyncio.run(request(warm, "POST", "/api/iris/analyze", HOT.encode())).status != 200:
        raise RuntimeError("the cache-hit body was not analyzed")
    iris = measure()
    # The minimal app, same gunicorn config file and bind, in place of the service.
    root(host, "systemctl stop iris-backend.socket iris-backend.service")
    try:
        root(
            host,
            "systemd-run --unit=iris-bench-minimal --uid=iris --gid=iris "
            f"-p WorkingDirectory={MINIMAL_DIR} -E PYTHONPATH={MINIMAL_DIR} "
            "/opt/iris/current/venv/bin/gunicorn -c /etc/iris/gunicorn.conf.py minimal_app:app",
        )
        deadline = time.monotonic() + 60
        while "200" not in root(host, ANSWERS_8080):
            if time.monotonic() > deadline:
                raise RuntimeError("the minimal app did not answer")
            time.sleep(0.5)
        minimal = measure()
    finally:
        root(host, "systemctl stop iris-bench-minimal.service || true")
        root(host, "systemctl start iris-backend.socket iris-backend.service")
    return {
        "connections": connections,
        "seconds": seconds,
        "iris": iris,
        "minimal_flask": minimal,
        "ratio_direct": round(iris["direct_req_s"] / minimal["direct_req_s"], 2),
        "ratio_nginx": round(iris["nginx_req_s"] / minimal["nginx_req_s"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--hit-seconds", type=int, default=10)
    parser.add_argument("--hit-connections", type=int, default=16)
    parser.add_argument("--no-provision", action="store_true", help="host already deployed")
    parser.add_argument("--keep", action="store_true", help="leave a sandbox we started up")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a thousand sockets at once
    figures: dict[str, object] = {"cpus": os.cpu_count(), "model_seconds": MODEL_SECONDS}
    with one_host_sandbox(keep=args.keep) as (info, _fresh):
        host = info.hosts[0]
        env = {**os.environ, "IRISCTL_INVENTORY": str(info.inventory)}
        if not args.no_provision:
            version = f"9.2.{time.strftime('%H%M%S')}"
            done = subprocess.run([IRISCTL, "provision", "--version", version], env=env)
            if done.returncode != 0:
                sys.exit("irisctl provision failed")
        target = Target(host.ip, 443, host.fqdn, sandbox_ca_bundle())
        conf = root(host, "cat /etc/iris/gunicorn.conf.py")
        figures["host_gunicorn_overrides"] = conf.split("import *", 1)[1].strip().splitlines()[3:]
        try:
            figures["in_flight"] = in_flight_side_by_side(host, target, args.in_flight)
            print(json.dumps(figures, indent=2), flush=True)
            figures["overload"] = overload(host, target, args.burst)
            print(json.dumps(figures, indent=2), flush=True)
            figures["cache_hits"] = hits(host, args.hit_seconds, args.hit_connections)
        finally:
            print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
