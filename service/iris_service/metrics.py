"""Cache metrics: counters shared by every worker, exact the moment a request is answered.

Every request's counts are stored before its response is sent, so ``cache stats`` read right
after N answered requests counts exactly N, whichever worker served them. Where they are:
- each live process counts in a shard of its own, ``${IRIS_CACHE_DIR}/metrics.d/*.counts``,
  mapped into its memory (``metrics_shards``): a count is a few memory stores, no system call;
- ``${IRIS_CACHE_DIR}/metrics.json`` holds the totals of processes that ended: a process
  merges its shard into it at exit, and a process starting merges the shards of processes
  that died without doing so (SIGKILL). Until then a dead process's shard is still read.
A reader adds the file and every shard it finds, holding a shared flock on the file; merges
hold it exclusively, so a count is read in one place or the other, never both or neither.

Why not update the file on every request, as before: the update measured 35-45 us in one
process, and behind gunicorn its five system calls per request (each a hand-over of the GIL
between a hundred threads) cost cache hits more than that: with the update off, hits went
from 0.61x to 0.68x of the minimal Flask app's throughput (the cache-hit load of
bench/service_serving.py, three runs side by side).

The file is updated in place: under an exclusive flock on the file itself, read it, add,
write the new JSON over it from offset 0 (padded with spaces to at least the old length, so
no stale byte is left and no truncate is needed). Not replacing the file (tmp + rename)
keeps a merge cheap: on ext4 a rename over an existing file forces the new data out to disk
(auto_da_alloc), measured ~375 us. The price: a power cut in the middle of a write can leave
a torn file, which reads as zeros and restarts counting; these counters are operational, not
billing. The file holds counters only, so its size does not grow with traffic, and there is
one shard per live worker. A process that cannot make its shard (a full disk) updates the
file for every count instead, and says so once in its log.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iris_service.metrics_shards import Layout, Shard, owner_alive, shards, snapshot

if TYPE_CHECKING:
    from iris_service.store_figures import SharedFigures

log = logging.getLogger(__name__)

COUNTERS = (
    "hits",
    "misses",
    "model_calls",
    "model_errors",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_spent_usd",
    "cost_saved_usd",
)
_MAX_FILE_BYTES = 64 * 1024  # far above the ~400 bytes of counters; bounds a bad file's read
_INTEGERS = frozenset(name for name in COUNTERS if not name.startswith("cost_"))
_LAYOUT = Layout(COUNTERS)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _with_derived(counters: dict[str, Any]) -> dict[str, Any]:
    lookups = counters["hits"] + counters["misses"]
    counters["hit_rate"] = round(counters["hits"] / lookups, 4) if lookups else 0.0
    counters["cost_spent_usd"] = round(counters["cost_spent_usd"], 8)
    counters["cost_saved_usd"] = round(counters["cost_saved_usd"], 8)
    return counters


def _parse(raw: bytes) -> dict[str, Any]:
    """Counters from the file's bytes (zeros when empty or unreadable), without derived ones."""
    counters: dict[str, Any] = {name: 0 for name in COUNTERS}
    counters["since"] = None
    counters["updated_at"] = None
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        data = {}
    if isinstance(data, dict):
        for name in COUNTERS:
            value = data.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                counters[name] = value
        counters["since"] = data.get("since")
        counters["updated_at"] = data.get("updated_at")
    return counters


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _add_shard(counters: dict[str, Any], shard: tuple[float, float, dict[str, float]]) -> None:
    created, updated, values = shard
    for name, value in values.items():
        counters[name] += round(value) if name in _INTEGERS else value
    if values["hits"] or values["misses"] or values["model_errors"]:
        # ISO 8601 UTC text in one format: compared as text, ordered as times
        counters["since"] = min(filter(None, (counters["since"], _iso(created))))
        counters["updated_at"] = max(filter(None, (counters["updated_at"], _iso(updated))))


@contextlib.contextmanager
def _locked(path: Path, flags: int, lock: int) -> Iterator[int]:
    fd = os.open(path, flags, 0o640)
    try:
        fcntl.flock(fd, lock)
        yield fd
    finally:
        os.close(fd)  # closing releases the flock


class CacheMetrics:
    def __init__(self, path: Path, shared: SharedFigures | None = None) -> None:
        self.path = Path(path)
        self.shard_dir = self.path.with_name(self.path.stem + ".d")  # metrics.d
        self.shared = shared  # the fleet's figures in the store (``store_figures``), if any
        self._lock = threading.Lock()  # threads of one process share its shard and descriptor
        self._fd: int | None = None
        self._fd_pid = 0  # a forked child opens its own
        self._shard: Shard | None = None
        self._shard_pid = 0  # a forked child makes its own

    def read(self) -> dict[str, Any]:
        """Current counters: the file plus every live shard (zeros when there is nothing)."""
        try:
            # Read-only open: the admin tool must not create files it may not own. The shared
            # lock keeps merges out while we read, so a count is never seen twice or missed.
            with _locked(self.path, os.O_RDONLY, fcntl.LOCK_SH) as fd:
                counters = _parse(os.pread(fd, _MAX_FILE_BYTES, 0))
                live = self._live_shards()
        except OSError:
            counters = _parse(b"")
            live = self._live_shards()
        for shard in live:
            _add_shard(counters, shard)
        return _with_derived(counters)

    def _live_shards(self) -> list[tuple[float, float, dict[str, float]]]:
        found = (snapshot(path, _LAYOUT) for path in shards(self.shard_dir))
        return [shard for shard in found if shard is not None]

    def add(self, **deltas: float) -> None:
        """Add to counters; never raises for I/O (metrics must not fail a request)."""
        unknown = set(deltas) - set(COUNTERS)
        if unknown:
            raise ValueError(f"unknown counters: {sorted(unknown)}")
        with self._lock:
            shard = self._own_shard()
            if shard is not None:
                shard.add(deltas)
            else:
                self._update_logged(deltas)
        if self.shared is not None:
            self.shared.add_counters(deltas)

    def _own_shard(self) -> Shard | None:
        """This process's shard, made on its first count; None if it cannot be made (then
        every count updates the file, as a shard merge does)."""
        if self._shard_pid == os.getpid():
            return self._shard
        self._shard_pid = os.getpid()
        self._shard = None
        try:
            self._writer_fd()  # the file first: a reader locks it to read the shards
            self.shard_dir.mkdir(exist_ok=True)
            dead = [path for path in shards(self.shard_dir) if not owner_alive(path)]
            if dead:
                self._update({}, merged=dead)
            self._shard = Shard(self.shard_dir, _LAYOUT)
        except OSError as error:
            self._drop_fd()
            log.warning(
                "cannot count in %s, updating %s per request: %s", self.shard_dir, self.path, error
            )
            return None
        atexit.register(self.retire)  # held to the end: a dropped object's counts are kept
        return self._shard

    def retire(self) -> None:
        """At exit: move this process's counts into the file and remove its shard."""
        with self._lock:
            shard, self._shard = self._shard, None
            if shard is None or self._shard_pid != os.getpid():
                return
            if not shard.path.exists():  # removed with its directory: nothing to keep
                shard.close()
                return
            try:
                self._update({}, merged=[shard.path])
            except OSError as error:  # the shard stays; the next worker to start merges it
                log.warning("cannot merge %s into %s: %s", shard.path, self.path, error)
            shard.close()

    def _writer_fd(self) -> int:
        if self._fd is not None and self._fd_pid == os.getpid():
            return self._fd
        if not self.path.parent.is_dir():  # once per process at most
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._fd_pid = os.getpid()
        return self._fd

    def _drop_fd(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None

    def _update_logged(self, deltas: dict[str, float]) -> None:
        try:
            self._update(deltas)
        except OSError as error:
            log.warning("cannot update %s: %s", self.path, error)

    def _update(self, deltas: dict[str, float], merged: Sequence[Path] = ()) -> None:
        """Add ``deltas`` and the counts of the ``merged`` shards to the file, then remove
        those shards, all under its exclusive lock (readers see them in one place or the
        other, never both). The caller holds ``self._lock``."""
        try:
            fd = self._writer_fd()
            if os.fstat(fd).st_nlink == 0:  # removed or replaced since we opened it
                self._drop_fd()
                fd = self._writer_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            self._drop_fd()  # a fresh descriptor next time
            raise
        try:
            old = os.pread(fd, _MAX_FILE_BYTES, 0)
            counters = _parse(old)
            for name, value in deltas.items():
                counters[name] += value
            for path in merged:
                shard = snapshot(path, _LAYOUT)
                if shard is not None:
                    _add_shard(counters, shard)
            now = _now_iso()
            counters["since"] = counters["since"] or now
            counters["updated_at"] = now
            # One line: json's C encoder is only used without indent (3x faster here).
            new = (json.dumps(_with_derived(counters), sort_keys=True) + "\n").encode()
            os.pwrite(fd, new.ljust(len(old)), 0)
            if len(old) >= _MAX_FILE_BYTES and os.fstat(fd).st_size > _MAX_FILE_BYTES:
                os.ftruncate(fd, len(new))  # junk beyond what we read and padded
            for path in merged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def record_hit(self, cost_saved_usd: float) -> None:
        self.add(hits=1, cost_saved_usd=cost_saved_usd)

    def record_model_call(
        self, input_tokens: int, cached_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        self.add(
            misses=1,
            model_calls=1,
            input_tokens=input_tokens,
            cached_tokens=cached_tokens,
            output_tokens=output_tokens,
            cost_spent_usd=cost_usd,
        )

    def record_model_error(self) -> None:
        self.add(misses=1, model_errors=1)
