"""Rate counts and budget spend in the shared store, falling back to the host's own counts.

With ``IRIS_CACHE_URL`` (and no ``IRIS_RATE_LIMIT_STORAGE`` of its own) the ``limits``
library's own Redis storage keeps every key's request counts and the daily spend in the store,
on the store's client (its timeouts, password and TLS), so every host counts against the same
numbers. While the store is down (``store.SharedStore.available``) the host's SQLite storage
(``rate_limits.SQLiteStorage``) counts instead, without a network attempt per request: limits
and budgets keep being enforced per host, never silently dropped (the store's degradation line
says so). What a host counted meanwhile is not added to the store afterwards: a minute's rate
window is over by then, and a day's budget may be passed by what the hosts spent apart.
"""

from __future__ import annotations

from limits.errors import StorageError
from limits.storage import RedisStorage, Storage

from iris_service.config import Settings
from iris_service.rate_limits import open_storage
from iris_service.store import PREFIX, SharedStore, shared_store

LIMITS_PREFIX = f"{PREFIX}limits"


class FallbackStorage(Storage):
    """A ``limits`` storage: the store's while it is up, the host's SQLite file while not."""

    STORAGE_SCHEME = None

    def __init__(self, store: SharedStore, local: Storage) -> None:
        super().__init__(None, wrap_exceptions=True)
        self.store = store
        self.local = local
        self._shared: RedisStorage | None = None

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return ()  # the two storages wrap their own errors in StorageError

    def _store_storage(self) -> Storage | None:
        if not self.store.available:
            return None
        if self._shared is None:
            pool = self.store.call(lambda client: client.connection_pool, None)
            if pool is None:
                return None
            self._shared = RedisStorage(
                "redis://", connection_pool=pool, key_prefix=LIMITS_PREFIX, wrap_exceptions=True
            )
        return self._shared

    def _run(self, method: str, *args: object) -> object:
        shared = self._store_storage()
        if shared is not None:
            try:
                return getattr(shared, method)(*args)
            except StorageError as error:
                self.store.failed(error.storage_error)
        return getattr(self.local, method)(*args)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return int(self._run("incr", key, expiry, amount))  # type: ignore[call-overload]

    def get(self, key: str) -> int:
        return int(self._run("get", key))  # type: ignore[call-overload]

    def get_expiry(self, key: str) -> float:
        return float(self._run("get_expiry", key))  # type: ignore[arg-type]

    def check(self) -> bool:
        shared = self._store_storage()
        if shared is not None:
            if shared.check():  # limits' check answers False instead of raising
                return True
            self.store.failed(ConnectionError("the store did not answer PING"))
        return self.local.check()

    def reset(self) -> int | None:
        return self._run("reset")  # type: ignore[return-value]

    def clear(self, key: str) -> None:
        self._run("clear", key)


def open_limits_storage(settings: Settings) -> Storage:
    """Where request counts and budget spend live for ``settings``."""
    local = open_storage(settings.limits_storage_uri)
    store = shared_store(settings)
    if store is None or settings.rate_limit_storage:
        return local  # no store, or a storage of its own was asked for
    return FallbackStorage(store, local)
