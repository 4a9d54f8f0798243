"""A writer thread per process that flushes what an object batched in memory, every second.

Counts are added per request as dict updates only (the hit path pays no I/O); this thread
writes them out. It starts with the first count in each process (so after gunicorn's fork),
holds its owner only weakly (an app built and dropped, as in tests, ends its thread), and
flushes once more at exit.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from typing import Protocol

FLUSH_INTERVAL_S = 1.0


class Flushable(Protocol):
    def flush(self) -> object: ...


class FlushThread:
    def __init__(self, owner: Flushable, name: str) -> None:
        self._owner = weakref.ref(owner)
        self._name = name
        self._lock = threading.Lock()
        self._pid: int | None = None

    def ensure_started(self) -> None:
        """Start this process's writer unless it runs already (cheap: one pid compare)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._write_every_second, name=self._name, daemon=True).start()
        atexit.register(self._flush_if_alive)

    def _flush_if_alive(self) -> bool:
        owner = self._owner()
        if owner is not None:
            owner.flush()
        return owner is not None

    def _write_every_second(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            if not self._flush_if_alive():
                return
