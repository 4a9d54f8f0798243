"""The shared cache store (Valkey/Redis, ``IRIS_CACHE_URL``): one client per process, every
call guarded, so the store failing is never an outage.

Every call has the short ``IRIS_CACHE_TIMEOUT_S`` (connect and read). The first call that
fails marks the store *down* for this process: one warning line, and from then on no request
touches the network for it (each caller gets its fallback at once: the memory and disk tiers,
the flock single flight, the host's own rate and budget counts). A background thread of the
process probes the store with PING, backing off from PROBE_START_S to PROBE_MAX_S; the first
answer marks it *up* again with one line. Health reports the state (``check``), probing an
idle store at most every HEALTH_PROBE_INTERVAL_S.

The password comes from ``secrets.fetch_cache_password`` (``IRIS_CACHE_PASSWORD``, else the
secret read by the child-process reader); it is never logged, and the URL is logged with any
password replaced.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.retry import Retry

from iris_service.config import Settings, redact_url
from iris_service.secrets import SecretError, fetch_cache_password

log = logging.getLogger(__name__)

PREFIX = "iris:"
PROBE_START_S = 0.5
PROBE_MAX_S = 5.0
# A secret that could not be read is asked for again at most this often (a child process each).
SECRET_RETRY_S = 30.0
HEALTH_PROBE_INTERVAL_S = 5.0

PasswordLoader = Callable[[Settings], str | None]


def _describe(error: BaseException) -> str:
    if isinstance(error, AuthenticationError):
        return (
            f"the store refused the credentials ({error}); check IRIS_CACHE_PASSWORD or the "
            "secret IRIS_CACHE_PASSWORD_SECRET_ID names"
        )
    return f"{type(error).__name__}: {error}"


def _iso(epoch: float | None) -> str | None:
    return (
        None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    )


class SharedStore:
    """The store as seen by one process: a redis client and whether the store is usable."""

    def __init__(
        self, settings: Settings, password_loader: PasswordLoader = fetch_cache_password
    ) -> None:
        if not settings.cache_url:
            raise ValueError("no IRIS_CACHE_URL")
        self.settings = settings
        self.url = redact_url(settings.cache_url)
        self.host = settings.host_name
        self._password_loader = password_loader
        self._client: redis.Redis | None = None
        self._secret_failed_at = float("-inf")
        self._secret_error = ""
        self._password_read_at = float("-inf")
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._error: str | None = None
        self._prober_pid = 0
        self._last_ok = float("-inf")
        self.outages = 0  # how many times this process saw the store go down

    # --- the client --------------------------------------------------------------------

    def client(self) -> redis.Redis:
        """The redis client, built on first use (the password read then)."""
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                if time.monotonic() - self._secret_failed_at < SECRET_RETRY_S:
                    raise SecretError(f"{self._secret_error} (read again later)")
                try:
                    password = self._password_loader(self.settings)
                except SecretError as error:
                    self._secret_failed_at = time.monotonic()
                    self._secret_error = str(error)
                    raise
                self._password_read_at = time.monotonic()
                self._client = self._build(password)
        return self._client

    def _forget_password(self) -> None:
        """After a refused login: read the secret again (it may have been rotated), at most
        every SECRET_RETRY_S (each read is a child process)."""
        from_secret = not self.settings.cache_password and self.settings.cache_password_secret_id
        if from_secret and time.monotonic() - self._password_read_at >= SECRET_RETRY_S:
            with self._lock:
                self._client = None

    def _build(self, password: str | None) -> redis.Redis:
        settings = self.settings
        assert settings.cache_url is not None
        options: dict[str, Any] = {
            "password": password,
            "socket_timeout": settings.cache_timeout_s,
            "socket_connect_timeout": settings.cache_timeout_s,
            # One immediate retry on a broken connection (a pooled one the store closed when it
            # restarted); none on a timeout: a slow store is skipped, not waited for twice.
            "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            # CLIENT SETNAME takes no spaces or odd characters: a name that failed would fail
            # every connection.
            "client_name": re.sub(r"[^A-Za-z0-9._-]", "-", f"iris-{self.host}-{os.getpid()}"),
        }
        if settings.cache_ca_file is not None:
            options["ssl_ca_certs"] = str(settings.cache_ca_file)
        return redis.Redis.from_url(settings.cache_url, **options)

    def prepare(self) -> None:
        """Read the password now (the app is being built), not in the first request."""
        try:
            self.client()
        except SecretError as error:
            self.failed(error)

    # --- guarded calls -----------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while the store is down: callers use their fallback without trying it."""
        if self._down_since is None:
            return True
        self._ensure_prober()  # a forked worker inherits the state, not the thread
        return False

    def call(self, operation: Callable[[redis.Redis], Any], default: Any) -> Any:
        """``operation(client)``, or ``default`` when the store is down or the call fails."""
        if not self.available:
            return default
        try:
            result = operation(self.client())
        except (RedisError, SecretError, OSError) as error:
            self.failed(error)
            return default
        self._last_ok = time.monotonic()
        return result

    def failed(self, error: BaseException) -> None:
        """Mark the store down (one line per outage) and start probing it."""
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.time()
            self._error = _describe(error)
            self.outages += 1
        log.warning(
            "shared cache store %s unavailable on %s (%s): serving from memory, disk and the "
            "model; rate limits and budgets count on this host alone until it is back",
            self.url,
            self.host,
            self._error,
        )
        self._ensure_prober()

    def _recovered(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            down_for = time.time() - self._down_since
            self._down_since = None
            self._error = None
        self._last_ok = time.monotonic()
        log.warning(
            "shared cache store %s is back on %s after %.1f s: the shared tier, figures and "
            "counts are used again",
            self.url,
            self.host,
            down_for,
        )

    def _ensure_prober(self) -> None:
        with self._lock:
            if self._prober_pid == os.getpid() or self._down_since is None:
                return
            self._prober_pid = os.getpid()
        threading.Thread(target=self._probe_until_up, name="store-probe", daemon=True).start()

    def _probe_until_up(self) -> None:
        delay = PROBE_START_S
        try:
            while self._down_since is not None:
                time.sleep(delay)
                try:
                    self.client().ping()
                except (RedisError, SecretError, OSError) as error:
                    self._error = _describe(error)
                    if isinstance(error, AuthenticationError):
                        self._forget_password()
                    delay = min(delay * 2, PROBE_MAX_S)
                    continue
                self._recovered()
        finally:
            with self._lock:
                self._prober_pid = 0
            if self._down_since is not None:  # went down again as we were leaving
                self._ensure_prober()

    # --- health ------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        """The health check: ``ok`` false while down (the service still answers 200)."""
        if self.available and time.monotonic() - self._last_ok > HEALTH_PROBE_INTERVAL_S:
            self.call(lambda client: client.ping(), None)  # an idle worker's view may be stale
        down_since = self._down_since
        report: dict[str, Any] = {
            "ok": down_since is None,
            "state": "up" if down_since is None else "degraded",
            "url": self.url,
            "host": self.host,
        }
        if down_since is not None:
            report["since"] = _iso(down_since)
            report["error"] = self._error
        return report


_stores: dict[tuple[Any, ...], SharedStore] = {}
_stores_lock = threading.Lock()


def shared_store(settings: Settings) -> SharedStore | None:
    """This process's store for ``settings`` (None without ``IRIS_CACHE_URL``).

    One per store and host name, so the analyzer, the rate limiter, the budgets and the
    figures of an app share one client and one view of whether the store is up.
    """
    if not settings.cache_url:
        return None
    ident = (
        settings.cache_url,
        settings.cache_password,
        settings.cache_password_secret_id,
        settings.cache_timeout_s,
        settings.cache_ca_file,
        settings.host_name,
    )
    with _stores_lock:
        store = _stores.get(ident)
        if store is None:
            store = _stores[ident] = SharedStore(settings)
            store.prepare()
        return store
