"""Serving benchmark, served directly by gunicorn on this machine (no nginx).

Run by hand: ``.venv/bin/python bench/service_serving.py [--duration 10] [--slow 28]``.

Every row runs under gunicorn with ``iris_service.gunicorn_conf`` plus the overrides its label
names; the rows differ only in those settings (and, for the last, in the app):
- this project's service under the seed's serving settings (2 sync workers);
- this project's service under its own settings (the package defaults);
- the same with the worker start hook switched off (``post_worker_init``: threads started on
  demand, CPython's 5 ms GIL turns), to measure what the hook costs or saves;
- the same with ``preload_app``;
- a minimal Flask app (parse the JSON body, answer a small JSON) under this project's settings:
  the ceiling the cache-hit path is compared with (``hits vs minimal``).

For each row, on a fresh cache dir, with the model stand-in answering in 2 s:
1. cache-hit throughput and latency (wrk when /usr/bin/wrk exists, else a Python client);
2. ``--slow`` distinct analyses fired at once, while a prober measures health-check latency
   (not for the minimal app, which calls no model);
3. peak RSS of the gunicorn process tree (master + workers) over the whole run.
The figures on a sandbox host through nginx are bench/capacity_bench.py's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from capacity_bench import MINIMAL_APP
from iris_service import gunicorn_conf

API_KEY = "bench-key"
MODEL_DELAY_S = 2.0
OURS = (
    f"{gunicorn_conf.workers} {gunicorn_conf.worker_class.rsplit('.', 1)[-1]}"
    f" x {gunicorn_conf.threads}"
)
SERVICE, MINIMAL = "iris_service.wsgi:app", "minimal_app:app"
# label: (gunicorn overrides, app)
CONFIGS = {
    "IRIS, seed settings (2 sync workers)": (
        "worker_class = 'sync'\nthreads = 1\nworkers = 2\n",
        SERVICE,
    ),
    f"IRIS, its settings ({OURS})": ("", SERVICE),
    f"IRIS, its settings ({OURS}), worker start hook off": (
        "def post_worker_init(worker):\n    pass\n",
        SERVICE,
    ),
    f"IRIS, its settings ({OURS}) + preload_app": ("preload_app = True\n", SERVICE),
    f"minimal Flask app, IRIS settings ({OURS})": ("", MINIMAL),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def source_file(tag: str) -> str:
    lines = ['"""Benchmark module."""', "import os", ""]
    for n in range(6):
        lines += ["", f"def handler_{tag}_{n}(event):", "    return os.path.join(event, 'x')"]
    return "\n".join(lines) + "\n"


def body(tag: str) -> dict:
    return {"filename": "b.py", "language": "python", "source_code": source_file(tag)}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


class RssSampler(threading.Thread):
    """Peak summed VmRSS of a process and its children, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.stopped = threading.Event()

    def tree(self) -> list[int]:
        pids, frontier = [self.pid], [self.pid]
        while frontier:
            parent = frontier.pop()
            try:
                children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            except OSError:
                continue
            pids += [int(c) for c in children]
            frontier += [int(c) for c in children]
        return pids

    def run(self) -> None:
        while not self.stopped.is_set():
            total = 0
            for pid in self.tree():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                match = re.search(r"VmRSS:\s+(\d+) kB", status)
                total += int(match.group(1)) if match else 0
            self.peak_kb = max(self.peak_kb, total)
            time.sleep(0.1)


def cache_hit_load(url: str, duration: int, connections: int) -> dict:
    payload = json.dumps(body("hot"))
    if shutil.which("wrk"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(payload)}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["x-api-key"] = "{API_KEY}"\n'
            )
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{duration}s",
                "--latency",
                "-s",
                script.name,
                url + "/api/iris/analyze",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        os.unlink(script.name)

        def ms(label: str) -> float:
            match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
            value, unit = float(match.group(1)), match.group(2)
            return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {
            "tool": "wrk",
            "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms("50"),
            "p99_ms": ms("99"),
            "non_2xx": int(errors.group(1)) if errors else 0,
        }
    latencies: list[float] = []
    end = time.monotonic() + duration

    def loop() -> None:
        session = requests.Session()
        while time.monotonic() < end:
            start = time.perf_counter()
            session.post(
                url + "/api/iris/analyze",
                data=payload,
                headers={"x-api-key": API_KEY, "Content-Type": "application/json"},
            )
            latencies.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "tool": "python",
        "req_per_s": len(latencies) / duration,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


def slow_analyses(url: str, count: int) -> dict:
    stop = threading.Event()
    health_ms: list[float] = []

    def probe() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            with contextlib.suppress(requests.RequestException):
                requests.get(url + "/api/iris/health", timeout=60)
            health_ms.append((time.perf_counter() - start) * 1000)
            stop.wait(0.2)

    def analyze(n: int) -> tuple[int, float]:
        start = time.perf_counter()
        response = requests.post(
            url + "/api/iris/analyze",
            json=body(f"slow{n}"),
            headers={"x-api-key": API_KEY},
            timeout=180,
        )
        return response.status_code, time.perf_counter() - start

    prober = threading.Thread(target=probe)
    started = time.perf_counter()
    prober.start()
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(analyze, range(count)))
    wall = time.perf_counter() - started
    stop.set()
    prober.join()
    latencies = [seconds for _status, seconds in results]
    return {
        "analyses": count,
        "ok": sum(1 for status, _s in results if status == 200),
        "wall_s": round(wall, 2),
        "analyses_per_s": round(count / wall, 2),
        "analysis_p50_s": round(percentile(latencies, 50), 2),
        "analysis_max_s": round(max(latencies), 2),
        "health_p50_ms": round(percentile(health_ms, 50), 1),
        "health_max_ms": round(max(health_ms), 1),
    }


def run_config(
    name: str, overrides: str, app: str, standin_url: str, args: argparse.Namespace
) -> dict:
    work = Path(tempfile.mkdtemp(prefix="iris-bench-"))
    conf = work / "gunicorn.conf.py"
    conf.write_text("from iris_service.gunicorn_conf import *  # noqa: F403\n" + overrides)
    (work / "minimal_app.py").write_text(MINIMAL_APP)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("IRIS_", "OPENAI_"))},
        "IRIS_BIND": f"127.0.0.1:{port}",
        "IRIS_API_KEY": API_KEY,
        "IRIS_CACHE_DIR": str(work / "iris"),
        "IRIS_EMF_FILE": str(work / "emf.log"),
        "IRIS_ACCESS_LOG": str(work / "access.log"),
        "IRIS_ERROR_LOG": str(work / "error.log"),
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": standin_url + "/v1",
        "PYTHONPATH": str(work),
    }
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(conf), app], env=env)
    url = f"http://127.0.0.1:{port}"
    sampler = RssSampler(process.pid)
    try:
        wait_http(url + ("/api/iris/health" if app == SERVICE else "/"))
        sampler.start()
        warm = requests.post(
            url + "/api/iris/analyze", json=body("hot"), headers={"x-api-key": API_KEY}, timeout=60
        )
        warm.raise_for_status()
        hits = cache_hit_load(url, args.duration, args.connections)
        slow = slow_analyses(url, args.slow) if app == SERVICE else None
        time.sleep(0.3)
    finally:
        sampler.stopped.set()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "config": name,
        "cache_hits": hits,
        "slow": slow,
        "peak_rss_mb": round(sampler.peak_kb / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of cache-hit load")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--slow", type=int, default=28, help="concurrent 2 s analyses")
    args = parser.parse_args()
    port = free_port()
    standin = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "irisctl.sandbox.model_standin",
            "--port",
            str(port),
            "--delay",
            str(MODEL_DELAY_S),
        ],
        stdout=subprocess.DEVNULL,
    )
    standin_url = f"http://127.0.0.1:{port}"
    try:
        wait_http(standin_url + "/_standin/stats")
        results = [run_config(n, o, a, standin_url, args) for n, (o, a) in CONFIGS.items()]
    finally:
        standin.terminate()
        standin.wait()
    print(f"\nmodel stand-in delay {MODEL_DELAY_S} s; {os.cpu_count()} CPUs; served directly\n")
    minimal = results[-1]["cache_hits"]["req_per_s"]
    header = (
        f"{'row':60} {'hit req/s':>10} {'vs minimal':>10} {'hit p99':>8} "
        f"{'slow wall':>9} {'health p50':>10} {'health max':>10} {'peak RSS':>9}"
    )
    print(header)
    for r in results:
        h, s = r["cache_hits"], r["slow"]
        r["hits_vs_minimal"] = round(h["req_per_s"] / minimal, 2)
        slow = (
            f"{s['wall_s']:>8.1f}s {s['health_p50_ms']:>8.1f}ms {s['health_max_ms']:>8.1f}ms"
            if s
            else f"{'-':>9} {'-':>10} {'-':>10}"
        )
        print(
            f"{r['config']:60} {h['req_per_s']:>10.0f} {r['hits_vs_minimal']:>9.2f}x "
            f"{h['p99_ms']:>6.1f}ms {slow} {r['peak_rss_mb']:>7.1f}MB"
        )
    print("\n" + json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
