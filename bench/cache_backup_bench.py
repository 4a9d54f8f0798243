"""Cache backup benchmark: wall time of ``iris-service-admin backup`` and ``restore`` of a
10,000-entry cache against moto in server mode on loopback.

Run by hand: ``.venv/bin/python bench/cache_backup_bench.py [--entries 10000] [--rounds 3]``.

A cache dir of ``--entries`` entries (each a realistic analysis: an intent and 12 blocks of
varied prose, about 3 KB of JSON) is generated once; moto serves S3 and instance metadata on
127.0.0.1, and the admin tool finds both through ``AWS_ENDPOINT_URL`` and
``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (credentials from IMDSv2, as on EC2). Each row is the
wall time of one admin tool process, from start to exit (Python start-up and the boto3 import
included), median of ``--rounds``:

- ``backup``: ``iris-service-admin backup`` of the full cache (gzip tar spooled, one PUT);
- ``backups``: ``iris-service-admin backups`` (list + one HEAD per backup in the bucket);
- ``restore (empty cache)``: ``iris-service-admin restore`` of the latest backup into an empty
  cache dir (a fresh host): every entry written;
- ``restore (full cache)``: the same restore into the cache it was taken from (a live host):
  every entry already present and kept.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from iris_service.cache import CacheEntry, DiskCache
from moto.server import ThreadedMotoServer

BUCKET = "iris-bench-cache-backups"
REGION = "us-east-2"
ADMIN = [sys.executable, "-m", "iris_service.admin"]


def make_cache(cache_dir: Path, count: int) -> int:
    """Entries of varied prose (seeded), so the archive compresses like real analyses do."""
    rng = random.Random(7)
    letters = string.ascii_lowercase
    words = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(3000)]

    def prose(count: int) -> str:
        return " ".join(rng.choices(words, k=count)).capitalize() + "."

    disk = DiskCache(cache_dir / "cache", ttl_s=30 * 86400.0, max_bytes=1024**4)
    now = time.time()
    for index in range(count):
        key = f"{index:064x}"
        blocks = [
            {
                "title": prose(4),
                "description": prose(22),
                "ranges": [[block * 10 + 1, block * 10 + 8]],
            }
            for block in range(12)
        ]
        disk.put(
            CacheEntry(
                key=key,
                file_intent=prose(30),
                responsibility_blocks=blocks,
                created_at=now - index,
                model="gpt-5-nano-2025-08-07",
                prompt_version="bench",
                usage={"input_tokens": 1200.0, "output_tokens": 400.0},
            )
        )
    return sum(path.stat().st_size for path, _ in disk.entry_files())


def admin(env: dict[str, str], *argv: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    done = subprocess.run([*ADMIN, *argv], env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"admin {' '.join(argv)} failed ({done.returncode}): {done.stdout}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    work = Path(tempfile.mkdtemp(prefix="iris-backup-bench-"))
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        full, empty = work / "full", work / "empty"
        raw_bytes = make_cache(full, args.entries)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IRIS_"))}
        env.update(
            IRIS_CACHE_DIR=str(full),
            IRIS_BACKUP_BUCKET=BUCKET,
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL=endpoint,
            AWS_EC2_METADATA_SERVICE_ENDPOINT=f"{endpoint}/",
            AWS_CONFIG_FILE=str(work / "none"),
            AWS_SHARED_CREDENTIALS_FILE=str(work / "none"),
        )
        rows: dict[str, list[float]] = {}
        details: dict[str, dict[str, Any]] = {}
        for _ in range(args.rounds):
            for name, argv, cache_dir in (
                ("backup", ("backup",), full),
                ("backups", ("backups",), full),
                ("restore (empty cache)", ("restore",), empty),
                ("restore (full cache)", ("restore",), full),
            ):
                shutil.rmtree(empty, ignore_errors=True)
                seconds, report = admin({**env, "IRIS_CACHE_DIR": str(cache_dir)}, *argv)
                rows.setdefault(name, []).append(seconds)
                details[name] = report
        backup = details["backup"]
        print(
            f"cache: {args.entries} entries, {raw_bytes / 1024**2:.1f} MiB of JSON; "
            f"backup object {backup['bytes'] / 1024**2:.2f} MiB; moto on {endpoint}; "
            f"median of {args.rounds} rounds"
        )
        print(f"{'operation':<24} {'wall s':>8} {'min s':>8} {'max s':>8}  result")
        for name, times in rows.items():
            report = details[name]
            result = {
                "backup": lambda r: f"{r['entries']} entries, tool's own {r['seconds']} s",
                "backups": lambda r: (
                    f"{len(r['backups'])} backups listed, the newest with "
                    f"{r['backups'][0]['entries']} entries"
                ),
                "restore (empty cache)": lambda r: f"{r['restored']} restored",
                "restore (full cache)": lambda r: (
                    f"{r['kept_existing']} kept, {r['restored']} restored"
                ),
            }[name](report)
            print(
                f"{name:<24} {statistics.median(times):>8.2f} {min(times):>8.2f} "
                f"{max(times):>8.2f}  {result}"
            )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
