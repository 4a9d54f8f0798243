"""One process's cache counters in a file it maps into memory: a count is a memory write.

``metrics.CacheMetrics`` keeps the totals of processes that have ended in ``metrics.json``;
each live process counts in a shard of its own, ``metrics.d/<pid>-<token>.counts``, mapped
with ``mmap`` (MAP_SHARED). Adding to it is a few stores into that memory, with no system
call: the page is the file's page in the page cache, so a reader that ``pread``s the file
sees every count the moment it is stored, before the request's answer goes out.

The shard is fixed-size binary: a sequence number, then ``SLOTS`` slots, each the shard's
creation and last-update times and one float64 per counter (integers up to 2**53 are exact).
An update writes the whole set of values into the next slot, then publishes it by storing
its sequence number: the slot a reader follows is never the one being written, so a writer
stopped in the middle of an update (descheduled, or killed) never leaves half an update to
read. A reader reads the sequence, that slot, then the sequence again (three reads, so in
that order): the slot was not rewritten meanwhile unless the writer published ``SLOTS - 1``
more updates in between, and it reads again if so. (A single slot guarded by an odd/even
sequence was not enough: a writer descheduled mid-update kept it odd for longer than a
reader retried, and a loaded test run saw half an update.) The ordering of the writer's
stores holds on x86-64 (stores become visible in program order), the production instance
type's architecture.

The file's blocks are allocated when it is created (``posix_fallocate``): a memory write to a
shared mapping whose block the disk cannot supply kills the process with SIGBUS, so a full
disk must fail here, at creation, where the caller falls back to updating the file directly.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SUFFIX = ".counts"
SLOTS = 8
_SEQUENCE = struct.Struct("<Q")
_READ_DEADLINE_S = 1.0


class Layout:
    """Where each counter lives in a shard of these ``counters``."""

    def __init__(self, counters: Sequence[str]) -> None:
        self.counters = tuple(counters)
        self.index = {name: i for i, name in enumerate(self.counters)}
        self.values = struct.Struct("<dd" + "d" * len(self.counters))  # created, updated, ...
        self.size = _SEQUENCE.size + SLOTS * self.values.size

    def slot(self, sequence: int) -> int:
        """Offset of the slot holding update number ``sequence``."""
        return _SEQUENCE.size + (sequence % SLOTS) * self.values.size


class Shard:
    """This process's shard: created on first use, written only by this process."""

    def __init__(self, directory: Path, layout: Layout) -> None:
        self.layout = layout
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            os.posix_fallocate(fd, 0, layout.size)
            self._map = mmap.mmap(fd, layout.size)
        except BaseException:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)
        self._sequence = 0
        self._created = time.time()
        self._values = [0.0] * len(layout.counters)

    def add(self, deltas: dict[str, float]) -> None:
        """Add to the counters (the caller serializes this process's threads)."""
        for name, value in deltas.items():
            self._values[self.layout.index[name]] += value
        sequence = self._sequence + 1
        self.layout.values.pack_into(
            self._map, self.layout.slot(sequence), self._created, time.time(), *self._values
        )
        _SEQUENCE.pack_into(self._map, 0, sequence)  # published
        self._sequence = sequence

    def close(self) -> None:
        self._map.close()


def owner_alive(path: Path) -> bool:
    """Whether the process that created this shard (by the pid in its name) still runs."""
    try:
        os.kill(int(path.name.split("-", 1)[0]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):  # another user's process; not a shard of ours
        return True
    return True


def shards(directory: Path) -> Iterator[Path]:
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.endswith(SUFFIX):
            yield directory / name


def snapshot(path: Path, layout: Layout) -> tuple[float, float, dict[str, float]] | None:
    """(created, updated, counters) of a shard, consistent; None when it is gone or empty."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # merged and removed meanwhile
        return None
    try:
        if os.fstat(fd).st_size < layout.size:
            return None  # just created: nothing counted yet
        deadline = time.monotonic() + _READ_DEADLINE_S
        while True:
            sequence = _SEQUENCE.unpack(os.pread(fd, _SEQUENCE.size, 0))[0]
            raw = os.pread(fd, layout.values.size, layout.slot(sequence))
            published = _SEQUENCE.unpack(os.pread(fd, _SEQUENCE.size, 0))[0]
            # past the deadline, a writer publishing without pause: its latest slot is used
            if published - sequence < SLOTS - 1 or time.monotonic() > deadline:
                break
            os.sched_yield()
        created, updated, *values = layout.values.unpack(raw)
    finally:
        os.close(fd)
    return created, updated, dict(zip(layout.counters, values, strict=True))
