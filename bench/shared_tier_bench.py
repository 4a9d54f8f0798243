"""Latency of a cache hit served by the shared tier (redis-server on loopback) against the disk
tier, side by side in one run, with the memory LRU out of the way so the tier under test answers.

Run by hand: ``.venv/bin/python bench/shared_tier_bench.py [--requests 2000] [--rounds 5]``
(needs ``redis-server``: ``make install`` adds it).

Rows (each: ``--rounds`` rounds of ``--requests`` timed operations, the rows interleaved round
by round so the machine's load hits them alike; p50/p90/p99 over all rounds, in microseconds):

1. ``lookup disk``: ``AnalysisCache.lookup`` of a cached key, memory tier cleared before each
   lookup, no shared tier: read + parse + utime of the entry file (``DiskCache.get``).
2. ``lookup shared``: the same with ``IRIS_CACHE_URL`` set, memory cleared before each lookup:
   one GET from redis-server over loopback TCP + parse (the disk is never reached on a hit).
3. ``lookup memory``: the same with the memory tier left in place (the reference every hit
   after the first pays).
4. ``request disk`` / ``request shared``: a whole ``POST /api/iris/analyze`` cache hit through
   Flask's test client (key check, body, normalize, key, lookup, metrics, EMF, JSON), the app
   built with ``IRIS_MEMORY_CACHE_ENTRIES=1`` and two cached sources requested in turn, so
   each request misses the memory tier and is answered by the tier under test. With the
   shared tier the request also adds its counts to the in-process figures (sent once a
   second by a background thread, as in service).

The redis-server runs on 127.0.0.1 with a password (ACL user ``iris``), no persistence; both
apps use the same model stand-in only to fill the cache first. Loopback is the best case: a
store on another host adds the private network's round trip (~0.1-0.3 ms in one AWS AZ).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "service"))

from iris_service import store_figures  # noqa: E402
from iris_service.analysis import build_cache  # noqa: E402
from iris_service.app import create_app  # noqa: E402
from iris_service.cache import AnalysisCache, CacheEntry  # noqa: E402
from iris_service.cache_key import key_for  # noqa: E402
from iris_service.config import Settings  # noqa: E402
from iris_service.source import normalize_source  # noqa: E402
from irisctl.sandbox.model_standin import start_standin  # noqa: E402
from service_helpers import analyze_body, sample_source  # noqa: E402
from store_helpers import RedisServer  # noqa: E402


def timed(fn: Callable[[], Any], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def lookup_row(cache: AnalysisCache, key: str, clear_memory: bool) -> Callable[[], Any]:
    def run() -> CacheEntry:
        if clear_memory:
            cache.memory.clear()
        entry = cache.lookup(key)
        assert entry is not None
        return entry

    return run


def request_row(client: Any, sources: list[str]) -> Callable[[], Any]:
    turn = [0]

    def run() -> None:
        turn[0] += 1
        answer = client.post("/api/iris/analyze", json=analyze_body(sources[turn[0] % 2]))
        assert answer.status_code == 200 and answer.json["metadata"]["cache_hit"] == 1

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed operations per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    standin = start_standin()
    with tempfile.TemporaryDirectory(prefix="shared-tier-bench-") as tmp:
        root = Path(tmp)
        (root / "redis").mkdir()
        server = RedisServer(root / "redis").start()
        try:
            base = Settings(
                openai_api_key="sk-bench",
                openai_base_url=standin.base_url,
                emf_file=root / "emf.log",
                memory_cache_entries=1,
                model_retries=0,
            )
            disk = base.with_changes(cache_dir=root / "disk", host_name="bench-disk")
            shared = base.with_changes(
                cache_dir=root / "shared",
                host_name="bench-shared",
                cache_url=server.url,
                cache_password=server.password,
            )
            sources = [sample_source("bench-a", 12), sample_source("bench-b", 12)]
            clients = {}
            for name, settings in (("disk", disk), ("shared", shared)):
                clients[name] = create_app(settings).test_client()
                for source in sources:  # fill the tier: one model call per source
                    clients[name].post("/api/iris/analyze", json=analyze_body(source))
            # The shared app's disk copy is removed: a shared-tier hit must not need it.
            for path in (root / "shared" / "cache").glob("*/*.json"):
                path.unlink()
            key = key_for(base, normalize_source(sources[0]), "python")
            disk_cache, shared_cache = build_cache(disk), build_cache(shared)
            rows: dict[str, Callable[[], Any]] = {
                "lookup disk": lookup_row(disk_cache, key, clear_memory=True),
                "lookup shared": lookup_row(shared_cache, key, clear_memory=True),
                "lookup memory": lookup_row(disk_cache, key, clear_memory=False),
                "request disk": request_row(clients["disk"], sources),
                "request shared": request_row(clients["shared"], sources),
            }
            samples: dict[str, list[float]] = {name: [] for name in rows}
            for row in rows.values():
                timed(row, 50)  # warm: connections, files, code paths
            for _ in range(args.rounds):
                for name, row in rows.items():
                    samples[name] += timed(row, args.requests)
        finally:
            for figures in store_figures._figures.values():
                figures.flush()  # before the server goes: nothing left for the exit hook
            server.kill()
            standin.stop()
    print(f"{args.rounds} rounds x {args.requests} per row, interleaved; microseconds")
    print(f"{'row':<16}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for name, values in samples.items():
        print(
            f"{name:<16}{percentile(values, 0.5):9.1f}{percentile(values, 0.9):9.1f}"
            f"{percentile(values, 0.99):9.1f}{statistics.fmean(values):9.1f}"
        )
    for what in ("lookup", "request"):
        added = percentile(samples[f"{what} shared"], 0.5) - percentile(
            samples[f"{what} disk"], 0.5
        )
        print(f"shared tier minus disk tier, {what} p50: {added:+.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
