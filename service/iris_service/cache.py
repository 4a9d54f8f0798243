"""Two-tier analysis cache: an in-process LRU in front of a disk tier shared by all workers.

Disk entries are content-addressed JSON files written atomically (tmp file + os.replace), so a
reader sees a whole old file or a whole new one. Anything unreadable is a miss. A file's mtime
is touched on every hit, so the size cap evicts the least recently used entries first. An
flock per key makes concurrent identical requests, in any thread of any worker, cost one model
call: the first caller computes while the others wait, then re-read the disk tier.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from iris_service.errors import ModelTimeout

log = logging.getLogger(__name__)

KEY_RE = re.compile(r"^[0-9a-f]{64}$")
LOCK_DIR = ".locks"
# Lock and tmp files this old belong to no live request (requests end within the deadline).
STALE_AFTER_S = 3600.0
RESCAN_INTERVAL_S = 300.0
EVICT_TO_FRACTION = 0.9
# A direct enforce_limits() waits this long for a running eviction (a full scan of a 1 GiB
# tier takes well under this) before it gives up loudly.
EVICT_LOCK_WAIT_S = 60.0
# Background scan passes per trigger; writes made during a pass can need one more.
BACKGROUND_SCAN_ROUNDS = 3
_LOCK_POLL_S = 0.02
# ``cache clear`` touches this file; workers drop their memory tier when its mtime changes.
CLEAR_MARKER = ".cleared"
CLEAR_CHECK_INTERVAL_S = 2.0


@dataclass(frozen=True)
class CacheEntry:
    key: str
    file_intent: str
    responsibility_blocks: list[dict[str, Any]]
    created_at: float
    model: str = ""
    prompt_version: str = ""
    usage: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> CacheEntry:
        """Parse and check an entry; raises ValueError on anything unexpected."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("entry is not an object")
        entry = cls(
            key=data["key"],
            file_intent=data["file_intent"],
            responsibility_blocks=data["responsibility_blocks"],
            created_at=float(data["created_at"]),
            model=data.get("model", ""),
            prompt_version=data.get("prompt_version", ""),
            usage=dict(data.get("usage") or {}),
        )
        if not isinstance(entry.file_intent, str) or not isinstance(
            entry.responsibility_blocks, list
        ):
            raise ValueError("entry has the wrong shape")
        return entry

    def expired(self, ttl_s: float, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) - self.created_at > ttl_s


def valid_key(key: str) -> bool:
    return bool(KEY_RE.match(key))


def _try_flock(fd: int, deadline: float | None) -> bool:
    """Take an exclusive flock on ``fd``: once (``deadline=None``) or polling until then."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if deadline is None or time.monotonic() >= deadline:
            return False
        time.sleep(_LOCK_POLL_S)


class MemoryCache:
    """Thread-safe LRU of entries, per worker process."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self._lru: LRUCache[str, CacheEntry] = LRUCache(maxsize=max_entries)
        self._lock = threading.Lock()
        self._ttl_s = ttl_s

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            entry = self._lru.get(key)
            if entry is not None and entry.expired(self._ttl_s):
                del self._lru[key]
                return None
            return entry

    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            self._lru[entry.key] = entry

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()


class DiskCache:
    """Entries under ``root/<key[:2]>/<key>.json``; safe for many processes and threads."""

    def __init__(self, root: Path, ttl_s: float, max_bytes: int) -> None:
        self.root = Path(root)
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._scan_lock = threading.Lock()
        self._last_scan = float("-inf")
        self._estimate_lock = threading.Lock()
        self._bytes_estimate = 0  # size of the disk tier as this process last knew it
        self._bytes_written = 0  # ever written by this process (a scan's reference point)

    def path_for(self, key: str) -> Path:
        if not valid_key(key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str, touch: bool = True) -> CacheEntry | None:
        path = self.path_for(key)
        try:
            entry = CacheEntry.from_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("cache entry %s unreadable (%s): treated as a miss", path.name, error)
            self._discard(path)
            return None
        if entry.key != key or entry.expired(self.ttl_s):
            self._discard(path)
            return None
        if touch:
            with contextlib.suppress(OSError):
                os.utime(path)  # marks it recently used for the size cap
        return entry

    def put(self, entry: CacheEntry) -> None:
        path = self.path_for(entry.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = entry.to_json().encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        with self._estimate_lock:
            self._bytes_estimate += len(data)
            self._bytes_written += len(data)
        self._maybe_schedule_scan()

    @contextlib.contextmanager
    def key_lock(self, key: str, deadline: float) -> Iterator[None]:
        """Hold an exclusive flock for ``key`` (waiting at most until ``deadline``)."""
        lock_path = self.root / LOCK_DIR / f"{self.path_for(key).stem}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as error:
            # An unwritable cache must not take analysis down; we only lose de-duplication.
            log.warning("cannot open cache lock %s: %s", lock_path, error)
            yield
            return
        try:
            if not _try_flock(fd, deadline):
                raise ModelTimeout("Timed out waiting for the same analysis in progress")
            with contextlib.suppress(OSError):
                os.utime(fd)  # keeps the stale-lock sweep away from live locks
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _discard(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

    def entry_files(self) -> Iterator[tuple[Path, os.stat_result]]:
        """Every entry file with its stat (skips lock and tmp files)."""
        if not self.root.is_dir():
            return
        for shard in self.root.iterdir():
            if shard.name.startswith(".") or not shard.is_dir():
                continue
            for path in shard.glob("*.json"):
                try:
                    yield path, path.stat()
                except FileNotFoundError:
                    continue

    def _maybe_schedule_scan(self) -> None:
        due = time.monotonic() - self._last_scan > RESCAN_INTERVAL_S
        if not due and self._bytes_estimate <= self.max_bytes:
            return
        if not self._scan_lock.acquire(blocking=False):
            return  # this worker's scan is running; it re-checks the estimate when done
        self._last_scan = time.monotonic()
        # A scan stats every file; run it beside the request, not inside it.
        threading.Thread(target=self._scan_in_background, daemon=True).start()

    def _scan_in_background(self) -> None:
        try:
            # Writes made while a scan runs are skipped by _maybe_schedule_scan and may be
            # missing from its listing: go again while the estimate says we are over the cap.
            for _ in range(BACKGROUND_SCAN_ROUNDS):
                if self._enforce_limits_unless_busy() is None:
                    return  # another worker is evicting: it sees our files too
                if self._bytes_estimate <= self.max_bytes:
                    return
        except Exception:
            log.exception("cache scan failed")
        finally:
            self._scan_lock.release()

    def enforce_limits(self, wait_s: float = EVICT_LOCK_WAIT_S) -> int:
        """Drop expired entries, stale lock/tmp files, then least recently used over the cap.

        Returns how many entries were removed. When another thread or worker is evicting,
        waits up to ``wait_s`` for it to finish and then enforces anyway (its view may predate
        our writes); raises TimeoutError if the lock is still held then, so a direct call never
        silently does nothing.
        """
        with self._evict_lock(time.monotonic() + wait_s) as held:
            if not held:
                raise TimeoutError(f"cache eviction lock still held by another after {wait_s} s")
            return self._evict()

    def _enforce_limits_unless_busy(self) -> int | None:
        """The opportunistic path: ``None`` (nothing done) when another holder is evicting."""
        with self._evict_lock(deadline=None) as held:
            return self._evict() if held else None

    @contextlib.contextmanager
    def _evict_lock(self, deadline: float | None) -> Iterator[bool]:
        """flock ``.locks/evict.lock`` (one evictor across workers); yields whether we hold it.

        ``deadline=None`` tries once; otherwise polls until the monotonic ``deadline``.
        """
        lock_dir = self.root / LOCK_DIR
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / "evict.lock", "a") as guard:  # closing releases the flock
            yield _try_flock(guard.fileno(), deadline)

    def _evict(self) -> int:
        """Enforce the TTL and the size cap; the caller holds the eviction lock."""
        lock_dir = self.root / LOCK_DIR
        removed = 0
        written_before = self._bytes_written
        now = time.time()
        for stale in [*lock_dir.glob("*.lock"), *self.root.glob("*/.*.tmp")]:
            if stale.name == "evict.lock":
                continue
            with contextlib.suppress(OSError):
                if now - stale.stat().st_mtime > STALE_AFTER_S:
                    stale.unlink()
        files = []
        total = 0
        for path, stat in self.entry_files():
            # mtime is refreshed on hits; an entry untouched for longer than the TTL is
            # certainly expired (created_at <= mtime), so it can go without being read.
            if now - stat.st_mtime > self.ttl_s:
                self._discard(path)
                removed += 1
                continue
            files.append((stat.st_mtime, stat.st_size, path))
            total += stat.st_size
        if total > self.max_bytes:
            target = int(self.max_bytes * EVICT_TO_FRACTION)
            for _mtime, size, path in sorted(files):
                if total <= target:
                    break
                self._discard(path)
                total -= size
                removed += 1
        with self._estimate_lock:
            # Bytes this process wrote since the listing began may be missing from it: count
            # them (perhaps twice, which at worst triggers one more scan).
            self._bytes_estimate = total + (self._bytes_written - written_before)
        return removed

    def clear(self, older_than_s: float | None = None) -> int:
        """Remove entries (all, or those created more than ``older_than_s`` ago)."""
        removed = 0
        now = time.time()
        for path, _stat in list(self.entry_files()):
            if older_than_s is not None:
                try:
                    created = CacheEntry.from_json(path.read_bytes()).created_at
                except (OSError, ValueError, KeyError, TypeError):
                    created = float("-inf")  # unreadable entries are always old enough
                if now - created <= older_than_s:
                    continue
            self._discard(path)
            removed += 1
        with self._estimate_lock:
            self._bytes_estimate = 0
        self._last_scan = float("-inf")
        if removed:
            self.mark_cleared()
        return removed

    def mark_cleared(self) -> None:
        marker = self.root / CLEAR_MARKER
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            os.utime(marker)

    def cleared_stamp(self) -> int:
        try:
            return (self.root / CLEAR_MARKER).stat().st_mtime_ns
        except OSError:
            return 0


class AnalysisCache:
    """Memory tier, then disk tier, then one computation per key across all workers."""

    def __init__(self, memory: MemoryCache, disk: DiskCache) -> None:
        self.memory = memory
        self.disk = disk
        self.clear_check_interval_s = CLEAR_CHECK_INTERVAL_S
        self._clear_stamp = disk.cleared_stamp()
        self._clear_checked = time.monotonic()

    def _follow_clears(self) -> None:
        """Forget the memory tier after ``iris-service-admin cache clear`` (checked every 2 s)."""
        now = time.monotonic()
        if now - self._clear_checked < self.clear_check_interval_s:
            return
        self._clear_checked = now
        stamp = self.disk.cleared_stamp()
        if stamp != self._clear_stamp:
            self._clear_stamp = stamp
            self.memory.clear()

    def lookup(self, key: str) -> CacheEntry | None:
        self._follow_clears()
        entry = self.memory.get(key)
        if entry is not None:
            return entry
        entry = self.disk.get(key)
        if entry is not None:
            self.memory.put(entry)
        return entry

    def store(self, entry: CacheEntry) -> None:
        self.memory.put(entry)
        try:
            self.disk.put(entry)
        except OSError as error:
            log.error("cannot write cache entry %s: %s", entry.key, error)

    def get_or_compute(
        self, key: str, compute: Callable[[], CacheEntry], deadline: float
    ) -> tuple[CacheEntry, bool]:
        """Return ``(entry, cache_hit)``; ``compute`` runs only when no worker has the entry."""
        entry = self.lookup(key)
        if entry is not None:
            return entry, True
        with self.disk.key_lock(key, deadline):
            entry = self.lookup(key)  # someone else may have finished it while we waited
            if entry is not None:
                return entry, True
            entry = compute()
            self.store(entry)
            return entry, False
