"""flock-based locks shared by every thread of every worker process.

An flock dies with its descriptor, so a crashed holder never leaves a lock held; the lock
files themselves stay and are swept by the cache's eviction once stale.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from iris_service.errors import ModelTimeout

log = logging.getLogger(__name__)

_LOCK_POLL_S = 0.02


def try_flock(fd: int, deadline: float | None) -> bool:
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


@contextlib.contextmanager
def exclusive_flock(path: Path, deadline: float | None) -> Iterator[bool]:
    """flock ``path`` (created if need be); yields whether we hold it.

    ``deadline=None`` tries once; otherwise polls until the monotonic ``deadline``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as guard:  # closing releases the flock
        yield try_flock(guard.fileno(), deadline)


@contextlib.contextmanager
def single_flight(lock_path: Path, deadline: float) -> Iterator[None]:
    """Hold the exclusive flock on ``lock_path``, waiting at most until ``deadline``.

    Used per cache key, so identical requests in any worker cost one model call. Raises
    ModelTimeout when the deadline passes first. When the lock file cannot be opened (an
    unwritable cache) the body runs unlocked: we lose de-duplication, not the analysis.
    """
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as error:
        log.warning("cannot open cache lock %s: %s", lock_path, error)
        yield
        return
    try:
        if not try_flock(fd, deadline):
            raise ModelTimeout("Timed out waiting for the same analysis in progress")
        with contextlib.suppress(OSError):
            os.utime(fd)  # keeps the stale-lock sweep away from live locks
        yield
    finally:
        os.close(fd)  # closing releases the flock
