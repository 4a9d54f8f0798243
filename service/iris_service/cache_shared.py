"""The shared cache tier: analyses in the store (``store.SharedStore``), seen by every host.

An entry is the same JSON as a disk entry under ``iris:entry:<sha256 key>``, set with the
entry's remaining lifetime (``IRIS_CACHE_TTL_DAYS`` from its ``created_at``) as the store's own
expiry, so the store drops it when the disk tier would.

Single flight across hosts: ``key_lock`` waits until it holds the key's lock in the store
(``iris:lock:<key>``, redis-py's ``Lock``: SET NX PX with a random token, released by a Lua
script only while the token is still ours) or until the entry appears (its holder stored it).
The holder renews the lock every LOCK_TTL_S / 3 while it computes, so a crashed holder's lock
expires within LOCK_TTL_S and one of the waiters takes over. When the store goes down while a
request waits, the wait continues on the host's flock (``fallback``): identical requests then
cost one model call per host instead of one per fleet.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from redis.exceptions import LockError
from redis.lock import Lock

from iris_service.cache import CacheEntry
from iris_service.errors import ModelTimeout
from iris_service.store import PREFIX, SharedStore

log = logging.getLogger(__name__)

ENTRY_PREFIX = f"{PREFIX}entry:"
LOCK_PREFIX = f"{PREFIX}lock:"
LOCK_TTL_S = 10.0
POLL_START_S = 0.02
POLL_MAX_S = 0.2

Fallback = Callable[[str, float], contextlib.AbstractContextManager[None]]


class SharedTier:
    def __init__(self, store: SharedStore, ttl_s: float, lock_ttl_s: float = LOCK_TTL_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.lock_ttl_s = lock_ttl_s

    @property
    def available(self) -> bool:
        return self.store.available

    def get(self, key: str) -> CacheEntry | None:
        """The entry, or None (absent, unreadable, expired, or the store unavailable)."""
        raw = self.store.call(lambda client: client.get(ENTRY_PREFIX + key), None)
        if raw is None:
            return None
        try:
            entry = CacheEntry.from_json(raw)
        except (ValueError, KeyError, TypeError) as error:
            log.warning("shared cache entry %s unreadable (%s): treated as a miss", key, error)
            self.store.call(lambda client: client.delete(ENTRY_PREFIX + key), None)
            return None
        if entry.key != key or entry.expired(self.ttl_s):
            return None
        return entry

    def put(self, entry: CacheEntry) -> bool:
        """Store ``entry`` for the rest of its lifetime; False when it was not stored."""
        left_ms = int((self.ttl_s - (time.time() - entry.created_at)) * 1000)
        if left_ms <= 0:
            return False
        data = entry.to_json()
        return bool(
            self.store.call(
                lambda client: client.set(ENTRY_PREFIX + entry.key, data, px=left_ms), False
            )
        )

    def key_lock(self, key: str, deadline: float, fallback: Fallback) -> StoreKeyLock:
        return StoreKeyLock(self, key, deadline, fallback)


class StoreKeyLock:
    """Context manager: hold ``key``'s lock in the store, or return once the entry exists.

    Raises ModelTimeout when neither happens before the monotonic ``deadline``.
    """

    def __init__(self, tier: SharedTier, key: str, deadline: float, fallback: Fallback) -> None:
        self.tier = tier
        self.key = key
        self.deadline = deadline
        self._fallback_factory = fallback
        self._fallback: contextlib.AbstractContextManager[None] | None = None
        self._lock: Lock | None = None
        self._stop_renewing = threading.Event()

    def __enter__(self) -> None:
        store = self.tier.store
        poll = POLL_START_S
        while True:
            if not store.available:
                self._fallback = self._fallback_factory(self.key, self.deadline)
                self._fallback.__enter__()
                return
            present = store.call(lambda client: client.exists(ENTRY_PREFIX + self.key), None)
            if present:
                return  # the holder stored it: the caller's lookup finds it
            if present is not None and self._acquire():
                return
            if time.monotonic() >= self.deadline:
                raise ModelTimeout("Timed out waiting for the same analysis in progress")
            time.sleep(poll)
            poll = min(poll * 2, POLL_MAX_S)

    def _acquire(self) -> bool:
        client = self.tier.store.call(lambda client: client, None)
        if client is None:
            return False
        lock = Lock(
            client,
            LOCK_PREFIX + self.key,
            timeout=self.tier.lock_ttl_s,
            blocking=False,
            thread_local=False,  # the renewing thread uses the same token
        )
        if not self.tier.store.call(lambda _client: lock.acquire(blocking=False), False):
            return False
        self._lock = lock
        threading.Thread(target=self._renew, name="store-lock-renew", daemon=True).start()
        return True

    def _renew(self) -> None:
        lock = self._lock
        assert lock is not None

        def renew(_client: object) -> bool:
            try:
                return lock.reacquire()
            except LockError:  # expired meanwhile (the store was away): not ours any more
                return False

        while not self._stop_renewing.wait(self.tier.lock_ttl_s / 3):
            if not self.tier.store.call(renew, True):
                return

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fallback is not None:
            self._fallback.__exit__(kind, error, traceback)
            return
        lock = self._lock
        if lock is None:
            return
        self._stop_renewing.set()

        def release(_client: object) -> None:
            try:
                lock.release()
            except LockError:  # expired meanwhile (the store was away): nothing of ours is left
                log.warning("shared cache lock for %s had expired before its release", self.key)

        self.tier.store.call(release, None)
