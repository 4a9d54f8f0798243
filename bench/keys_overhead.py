"""What named keys and rate limits add to each request, in microseconds.

Run by hand: ``.venv/bin/python bench/keys_overhead.py [--requests 20000] [--keys 50]``.

Times (best of 5 runs), in one process on a fresh cache dir (on the disk of this checkout):
1. the key check before named keys (``hmac.compare_digest`` against each IRIS_API_KEY key);
2. the key check now: ``stat`` of the keys file, SHA-256, lookup, constant-time compare;
3. the rate limit count (``limits`` fixed window on the SQLite storage);
4. the per-key usage count (in memory; each worker writes it once a second);
5. all of it: ``ClientAuth.admit`` (what every analyze request runs before its body is read)
   for a key without a rate limit (the default: IRIS_RATE_LIMIT_PER_MINUTE=0) and for a key
   with one, alone and with a second process admitting the same key at the same time (both
   writers contend for the same SQLite file, as gunicorn's 2 workers do).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from iris_service.auth import ClientAuth
from iris_service.config import Settings

NAMED_KEY = "iris_named-key-0"  # key-0: counted on every request, never refused
DEFAULT_KEY = "default-key"  # IRIS_API_KEY: no rate limit


REPEAT = 5  # each figure is the best of this many runs: the machine's noise only adds


def _per_call_us(fn: Callable[[], object], count: int) -> float:
    fn()  # connections opened, file read
    best = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def _settings(base: Path, keys: int) -> Settings:
    entries = {
        f"key-{i}": {
            "sha256": hashlib.sha256(f"iris_named-key-{i}".encode()).hexdigest(),
            "rate_per_minute": 10**9,
        }
        for i in range(keys)
    }
    path = base / "api_keys.json"
    path.write_text(json.dumps({"format": 1, "revision": 1, "keys": entries}))
    return Settings(api_keys=(DEFAULT_KEY,), api_keys_file=path, cache_dir=base / "iris")


def _contender(settings: Settings, count: int, ready: multiprocessing.Event) -> None:
    auth = ClientAuth(settings)
    ready.set()
    for _ in range(count):
        auth.admit(NAMED_KEY)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--keys", type=int, default=50, help="named keys in the keys file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as tmp:
        settings = _settings(Path(tmp), args.keys)
        auth = ClientAuth(settings)
        old_keys = [b"default-key"]
        given = NAMED_KEY.encode()

        def before() -> bool:
            matched = False
            for key in old_keys:
                matched |= hmac.compare_digest(given, key)
            return matched

        rows = {
            "key check before (compare with IRIS_API_KEY)": _per_call_us(before, args.requests),
            "key check now (stat, sha256, lookup, compare)": _per_call_us(
                lambda: auth.authenticate(NAMED_KEY), args.requests
            ),
            "rate limit count (limits, SQLite storage)": _per_call_us(
                lambda: auth.limiter.hit("key-0", 10**9), args.requests
            ),
            "usage count (in memory)": _per_call_us(
                lambda: auth.usage.record_request("key-0"), args.requests
            ),
            "admit, a key without a rate limit": _per_call_us(
                lambda: auth.admit(DEFAULT_KEY), args.requests
            ),
            "admit, a key with a rate limit": _per_call_us(
                lambda: auth.admit(NAMED_KEY), args.requests
            ),
        }
        ready = multiprocessing.Event()
        other = multiprocessing.Process(
            target=_contender, args=(settings, args.requests * (REPEAT + 1), ready)
        )
        other.start()
        ready.wait()
        rows["admit, a key with a rate limit, 2 processes at once"] = _per_call_us(
            lambda: auth.admit(NAMED_KEY), args.requests
        )
        other.join()
    width = max(len(label) for label in rows)
    print(f"{args.requests} requests, {args.keys} named keys; microseconds per request")
    for label, value in rows.items():
        print(f"  {label:<{width}}  {value:7.1f}")


if __name__ == "__main__":
    main()
