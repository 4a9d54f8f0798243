"""The analysis cache: an in-process LRU in front of a disk tier shared by all workers (and,
with ``IRIS_CACHE_URL``, the shared tier of ``cache_shared`` between them, see AnalysisCache).

Kept hand-written rather than diskcache: entries stay one inspectable JSON file per SHA-256
key (a corrupt one is a single miss, not a broken database), flock dies with its holder, and
diskcache would still need our clear marker and single-flight lock (see docs/design.md).

Disk entries are content-addressed JSON files written atomically (tmp file + os.replace), so a
reader sees a whole old file or a whole new one. Anything unreadable is a miss. A file's mtime
is touched on every hit, so the size cap (``cache_eviction``) evicts the least recently used
entries first. An flock per key (``file_locks.single_flight``) makes concurrent identical
requests, in any thread of any worker, cost one model call: the first caller computes while
the others wait, then re-read the disk tier.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from iris_service.cache_eviction import EVICT_LOCK_WAIT_S, LOCK_DIR, Evictor, discard
from iris_service.cache_key import valid_key
from iris_service.file_locks import single_flight

if TYPE_CHECKING:
    from iris_service.cache_shared import SharedTier

log = logging.getLogger(__name__)

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
        self._evictor = Evictor(self.root, ttl_s, max_bytes, self.entry_files)

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
            discard(path)
            return None
        if entry.key != key or entry.expired(self.ttl_s):
            discard(path)
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
        self._evictor.wrote(len(data))

    def key_lock(self, key: str, deadline: float) -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive flock for ``key`` (waiting at most until ``deadline``)."""
        return single_flight(self.root / LOCK_DIR / f"{self.path_for(key).stem}.lock", deadline)

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

    def enforce_limits(self, wait_s: float = EVICT_LOCK_WAIT_S) -> int:
        """See ``Evictor.enforce_limits``: TTL, stale files, size cap; entries removed."""
        return self._evictor.enforce_limits(wait_s)

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
            discard(path)
            removed += 1
        self._evictor.forget()
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
    """Memory tier, then (with ``IRIS_CACHE_URL``) the shared tier, then the disk tier, then
    one computation per key across all workers (and hosts, through the shared tier's lock).

    With the shared tier the disk stays as this host's fallback: entries are written through
    to it, read from it when the store is down or misses (a disk hit is copied into the store,
    so entries from before the store, or restored from a backup, reach every host).
    """

    def __init__(
        self, memory: MemoryCache, disk: DiskCache, shared: SharedTier | None = None
    ) -> None:
        self.memory = memory
        self.disk = disk
        self.shared = shared
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

    def remembered(self, key: str) -> CacheEntry | None:
        """The entry when this worker's memory tier holds it: no file, no network."""
        self._follow_clears()
        return self.memory.get(key)

    def lookup(self, key: str) -> CacheEntry | None:
        self._follow_clears()
        entry = self.memory.get(key)
        if entry is not None:
            return entry
        if self.shared is not None:
            entry = self.shared.get(key)
            if entry is not None:
                self.memory.put(entry)
                return entry
        entry = self.disk.get(key)
        if entry is not None:
            self.memory.put(entry)
            if self.shared is not None:
                self.shared.put(entry)
        return entry

    def store(self, entry: CacheEntry) -> None:
        self.memory.put(entry)
        if self.shared is not None:
            self.shared.put(entry)
        try:
            self.disk.put(entry)
        except OSError as error:
            log.error("cannot write cache entry %s: %s", entry.key, error)

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], CacheEntry],
        deadline: float,
        while_waiting: Callable[[], contextlib.AbstractContextManager[None]] = (
            contextlib.nullcontext
        ),
    ) -> tuple[CacheEntry, bool]:
        """Return ``(entry, cache_hit)``; ``compute`` runs only when no worker has the entry.

        ``while_waiting`` is entered around the wait for the key's lock (the caller gives back
        its cpu_gate slot there: the holder may be computing for seconds).
        """
        entry = self.lookup(key)
        if entry is not None:
            return entry, True
        with contextlib.ExitStack() as held:
            with while_waiting():
                held.enter_context(self._key_lock(key, deadline))
            entry = self.lookup(key)  # someone else may have finished it while we waited
            if entry is not None:
                return entry, True
            entry = compute()
            self.store(entry)
            return entry, False

    def _key_lock(self, key: str, deadline: float) -> contextlib.AbstractContextManager[None]:
        if self.shared is None:
            return self.disk.key_lock(key, deadline)
        return self.shared.key_lock(key, deadline, self.disk.key_lock)
