"""The disk tier's limits: entries past the TTL, stale lock and tmp files, and the size cap
(least recently used first: a hit touches an entry's mtime).

One evictor runs at a time across all workers (``.locks/evict.lock``). Writes trigger a scan
in a background thread when this process's estimate of the tier's size is over the cap, or
every RESCAN_INTERVAL_S.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from iris_service.file_locks import exclusive_flock

log = logging.getLogger(__name__)

LOCK_DIR = ".locks"
EVICT_LOCK = "evict.lock"
# Lock and tmp files this old belong to no live request (requests end within the deadline).
STALE_AFTER_S = 3600.0
RESCAN_INTERVAL_S = 300.0
EVICT_TO_FRACTION = 0.9
# A direct enforce_limits() waits this long for a running eviction (a full scan of a 1 GiB
# tier takes well under this) before it gives up loudly.
EVICT_LOCK_WAIT_S = 60.0
# Background scan passes per trigger; writes made during a pass can need one more.
BACKGROUND_SCAN_ROUNDS = 3

EntryFiles = Callable[[], Iterable[tuple[Path, os.stat_result]]]


def discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


class Evictor:
    """Enforces ``ttl_s`` and ``max_bytes`` on the entries ``entry_files`` lists under ``root``."""

    def __init__(self, root: Path, ttl_s: float, max_bytes: int, entry_files: EntryFiles) -> None:
        self.root = root
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._entry_files = entry_files
        self._scan_lock = threading.Lock()
        self._last_scan = float("-inf")
        self._estimate_lock = threading.Lock()
        self._bytes_estimate = 0  # size of the disk tier as this process last knew it
        self._bytes_written = 0  # ever written by this process (a scan's reference point)

    def wrote(self, size: int) -> None:
        """Count an entry this process wrote; may start a background scan."""
        with self._estimate_lock:
            self._bytes_estimate += size
            self._bytes_written += size
        self._maybe_schedule_scan()

    def forget(self) -> None:
        """After a clear: the tier is (about) empty and the next write may scan again."""
        with self._estimate_lock:
            self._bytes_estimate = 0
        self._last_scan = float("-inf")

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
        with exclusive_flock(self._evict_lock_path, time.monotonic() + wait_s) as held:
            if not held:
                raise TimeoutError(f"cache eviction lock still held by another after {wait_s} s")
            return self._evict()

    def _enforce_limits_unless_busy(self) -> int | None:
        """The opportunistic path: ``None`` (nothing done) when another holder is evicting."""
        with exclusive_flock(self._evict_lock_path, deadline=None) as held:
            return self._evict() if held else None

    @property
    def _evict_lock_path(self) -> Path:
        return self.root / LOCK_DIR / EVICT_LOCK

    def _evict(self) -> int:
        """Enforce the TTL and the size cap; the caller holds the eviction lock."""
        removed = 0
        written_before = self._bytes_written
        now = time.time()
        for stale in [*(self.root / LOCK_DIR).glob("*.lock"), *self.root.glob("*/.*.tmp")]:
            if stale.name == EVICT_LOCK:
                continue
            with contextlib.suppress(OSError):
                if now - stale.stat().st_mtime > STALE_AFTER_S:
                    stale.unlink()
        files = []
        total = 0
        for path, stat in self._entry_files():
            # mtime is refreshed on hits; an entry untouched for longer than the TTL is
            # certainly expired (created_at <= mtime), so it can go without being read.
            if now - stat.st_mtime > self.ttl_s:
                discard(path)
                removed += 1
                continue
            files.append((stat.st_mtime, stat.st_size, path))
            total += stat.st_size
        if total > self.max_bytes:
            target = int(self.max_bytes * EVICT_TO_FRACTION)
            for _mtime, size, path in sorted(files):
                if total <= target:
                    break
                discard(path)
                total -= size
                removed += 1
        with self._estimate_lock:
            # Bytes this process wrote since the listing began may be missing from it: count
            # them (perhaps twice, which at worst triggers one more scan).
            self._bytes_estimate = total + (self._bytes_written - written_before)
        return removed
