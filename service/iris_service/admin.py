"""``iris-service-admin``: inspect, clear, back up and restore the cache on a host; prints
JSON on stdout.

Exit codes: 0 success, 1 any other S3 or archive failure, 2 usage error, 3 entry or backup
not found, 4 no backup bucket configured, 5 no backups at all, 6 access denied, 7 S3
unreachable, 8 no such bucket.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iris_service import cache_backup
from iris_service.cache import CacheEntry, DiskCache
from iris_service.cache_key import key_for, valid_key
from iris_service.config import SUPPORTED_LANGUAGES, Settings
from iris_service.key_admin import budget_summary
from iris_service.metrics import CacheMetrics
from iris_service.source import normalize_source
from iris_service.store_admin import clear_shared, inspect_shared, shared_cache_stats

EXIT_NOT_FOUND = 3
LANGUAGE_BY_SUFFIX = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".jsx": "javascriptreact",
    ".tsx": "typescriptreact",
}


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _disk(settings: Settings) -> DiskCache:
    return DiskCache(settings.disk_cache_dir, settings.cache_ttl_s, settings.cache_max_bytes)


def cache_stats(settings: Settings) -> dict[str, Any]:
    entries = 0
    total_bytes = 0
    oldest: float | None = None
    newest: float | None = None
    for path, stat in _disk(settings).entry_files():
        entries += 1
        total_bytes += stat.st_size
        try:
            created = CacheEntry.from_json(path.read_bytes()).created_at
        except (OSError, ValueError, KeyError, TypeError):
            continue
        oldest = created if oldest is None else min(oldest, created)
        newest = created if newest is None else max(newest, created)
    counters = CacheMetrics(settings.metrics_file).read()
    shared = shared_cache_stats(settings)  # the fleet's figures per host, with IRIS_CACHE_URL
    return {
        "cache_dir": str(settings.disk_cache_dir),
        "entries": entries,
        "bytes": total_bytes,
        "max_bytes": settings.cache_max_bytes,
        "oldest_entry": _iso(oldest),
        "newest_entry": _iso(newest),
        **{k: v for k, v in counters.items() if k not in ("since", "updated_at")},
        "metrics_since": counters.get("since"),
        "budget": budget_summary(settings),  # today's model spend against the global budget
        **({"shared": shared} if shared is not None else {}),
    }


def key_for_file(settings: Settings, path: Path, language: str | None = None) -> str:
    """The cache key the service uses for this file's contents."""
    language = language or LANGUAGE_BY_SUFFIX.get(path.suffix.lower())
    if language is None:
        raise ValueError(f"cannot tell the language of {path.name}: pass --language")
    source = path.read_bytes().decode("utf-8", "surrogateescape")
    return key_for(settings, normalize_source(source), language)


def cache_inspect(settings: Settings, key: str) -> dict[str, Any] | None:
    entry = _disk(settings).get(key, touch=False) or inspect_shared(settings, key)
    if entry is None:
        return None
    return {
        "key": entry.key,
        "created_at": _iso(entry.created_at),
        "model": entry.model,
        "prompt_version": entry.prompt_version,
        "usage": entry.usage,
        "file_intent": entry.file_intent,
        "responsibility_blocks": entry.responsibility_blocks,
    }


def cache_clear(settings: Settings, older_than_s: float | None) -> dict[str, Any]:
    disk = _disk(settings)
    report: dict[str, Any] = {"removed": disk.clear(older_than_s)}
    if settings.cache_url:
        try:
            report["removed_shared"] = clear_shared(settings, older_than_s)
        except Exception as error:  # the store's own errors; the disk part is done
            report["shared_error"] = f"shared cache store unavailable: {error}"
        disk.mark_cleared()  # every host's memory tier may hold what left the store
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iris-service-admin",
        description="Inspect the IRIS analysis cache (reads the service's environment).",
        epilog="Exit codes: 0 success, 2 usage error, 3 cache entry or backup not found, "
        "4 no backup bucket configured, 5 no backups, 6 access denied, 7 S3 unreachable, "
        "8 no such bucket.",
    )
    groups = parser.add_subparsers(dest="group", required=True)
    cache = groups.add_parser("cache", help="the analysis cache").add_subparsers(
        dest="command", required=True
    )
    cache.add_parser("stats", help="entries, bytes, hit rate, tokens and cost")
    inspect = cache.add_parser("inspect", help="show one cached analysis")
    which = inspect.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", help="cache key (64 hex characters)")
    which.add_argument("--file", type=Path, help="a source file, hashed as the service does")
    inspect.add_argument(
        "--language",
        choices=sorted(SUPPORTED_LANGUAGES),
        help="language of --file (default: from its extension)",
    )
    clear = cache.add_parser("clear", help="remove cached analyses")
    clear.add_argument(
        "--older-than", type=float, metavar="SECONDS", help="only entries older than this"
    )
    groups.add_parser("backup", help="back the cache up to S3 (IRIS_BACKUP_BUCKET)")
    groups.add_parser("backups", help="the backups in S3, newest first")
    restore = groups.add_parser("restore", help="restore a backup; entries present are kept")
    restore.add_argument("--from", dest="backup_id", metavar="ID", help="default: the latest")
    restore.add_argument(
        "--if-empty", action="store_true", help="only into an empty cache; no backup is no error"
    )
    return parser


def _backup_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        target = cache_backup.BackupTarget.from_env(settings)
        if args.group == "backup":
            with contextlib.suppress(OSError):
                os.nice(19)  # never compete with serving (the unit also sets Nice= and I/O idle)
            _print(cache_backup.backup(settings, target))
        elif args.group == "backups":
            _print(cache_backup.list_backups(target))
        elif args.if_empty and args.backup_id is None:
            _print(cache_backup.restore_if_empty(settings, target))
        else:
            _print(cache_backup.restore(settings, target, args.backup_id))
    except cache_backup.BackupError as error:
        _print({"error": str(error)})
        return error.exit_code
    return 0


def _print(data: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except Exception as error:
        _print({"error": f"bad environment: {error}"})
        return 2
    if args.group != "cache":
        return _backup_command(args, settings)
    if args.command == "stats":
        _print(cache_stats(settings))
        return 0
    if args.command == "clear":
        if args.older_than is not None and args.older_than < 0:
            _print({"error": "--older-than must be >= 0"})
            return 2
        _print(cache_clear(settings, args.older_than))
        return 0
    if args.file is not None:
        try:
            key = key_for_file(settings, args.file, args.language)
        except (OSError, ValueError) as error:
            _print({"error": str(error)})
            return 2
    else:
        key = args.key.strip().lower()
        if not valid_key(key):
            _print({"error": f"not a cache key: {args.key!r} (expected 64 hex characters)"})
            return 2
    found = cache_inspect(settings, key)
    if found is None:
        _print({"error": "no cached analysis for this key", "key": key})
        return EXIT_NOT_FOUND
    _print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
