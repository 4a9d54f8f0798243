"""Client authentication and per-key limits: who is asking (the x-api-key header against the
key ring), whether they are within their requests per minute, and counting their use.

Per request: one ``stat`` of the keys file, one SHA-256, one dict lookup, one constant-time
compare, one rate-limit count and one usage row update (measured in ``bench/keys_overhead.py``).
"""

from __future__ import annotations

from iris_service.api_keys import DEFAULT_NAME, ClientKey, KeyRing
from iris_service.budgets import Budgets
from iris_service.config import Settings
from iris_service.errors import ServiceUnavailable, Unauthorized
from iris_service.key_usage import KeyUsage
from iris_service.rate_limits import RateLimiter
from iris_service.store_figures import shared_figures
from iris_service.store_limits import open_limits_storage

HEADER = "x-api-key"
# Who is asking when no key is configured at all (dev only).
ANONYMOUS = ClientKey(DEFAULT_NAME)


class ClientAuth:
    """The key ring, the rate limiter, the budgets and the usage counters of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.api_keys, settings.api_keys_file)
        storage = open_limits_storage(settings)  # the shared store's, if any (store_limits)
        self.limiter = RateLimiter(storage)
        shared_host = settings.host_name if settings.cache_url else None  # per-host spend too
        self.budgets = Budgets(storage, settings.daily_budget_usd, shared_host)
        self.usage = KeyUsage(settings.key_usage_file, shared_figures(settings))

    def admit(self, provided: str | None) -> ClientKey:
        """The key of this request, counted; 401 without a valid key, 429 over its rate."""
        client = self.authenticate(provided)
        self.count(client)
        return client

    def count(self, client: ClientKey) -> None:
        """Count one request of an authenticated ``client``; 429 over its rate."""
        rate = client.rate_per_minute
        self.limiter.hit(client.name, self.settings.rate_limit_per_minute if rate is None else rate)
        self.usage.record_request(client.name)

    def authenticate(self, provided: str | None) -> ClientKey:
        if self.settings.auth_misconfigured:
            raise ServiceUnavailable("Service misconfigured: IRIS_API_KEY is not set")
        if self.keys.open_access:
            return ANONYMOUS
        if not provided:
            raise Unauthorized("Missing x-api-key header")
        client = self.keys.lookup(provided)
        if client is None:
            raise Unauthorized("Invalid API key")
        return client

    def check_budget(self, client: ClientKey) -> None:
        """429 when ``client``'s or the service's model budget for today is spent."""
        self.budgets.check(client.name, client.daily_budget_usd)

    def record_model_call(self, client: ClientKey, cost_usd: float) -> None:
        self.budgets.record(client.name, cost_usd)
        self.usage.record_model_call(client.name, cost_usd)
