"""Daily model budgets in USD: one per key (``irisctl keys add --daily-budget-usd``) and one
for the whole service (``IRIS_DAILY_BUDGET_USD``). Each day is a UTC day.

The spend is estimated from the token counts of each model call (``agent.estimate_cost``) and
kept in the rate limiter's storage as integer nano-dollars under a key per UTC day, so it is
shared exactly as the request counts are: by every worker of a host with the SQLite storage,
by every host with a Redis one. A request that would call the model is refused (429) once a
budget it falls under is spent; cache hits never call the model and are always served. Calls
already in flight when a budget runs out still finish, so a day's spend can pass the budget by
what those calls cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from limits.errors import StorageError
from limits.storage import Storage

from iris_service.errors import ServiceUnavailable, TooManyRequests
from iris_service.rate_limits import warn_storage

_NANO = 1_000_000_000
GLOBAL = "*"
_KEEP_S = 2 * 86400  # a day's counter outlives its day, so yesterday's spend can be read


def _day(now: datetime) -> str:
    return now.strftime("%Y-%m-%d")


def next_reset(now: datetime | None = None) -> datetime:
    """The next UTC midnight: when every daily budget starts again."""
    now = now or datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


@dataclass(frozen=True)
class Spend:
    spent_usd: float
    budget_usd: float | None  # None: no budget
    resets_at: str

    def as_dict(self) -> dict[str, object]:
        return {
            "spent_today_usd": self.spent_usd,
            "daily_budget_usd": self.budget_usd,
            "budget_resets_at": self.resets_at,
        }


class Budgets:
    def __init__(self, storage: Storage, global_budget_usd: float, host: str | None = None) -> None:
        self.storage = storage
        self.global_budget_usd = global_budget_usd  # 0: none
        # With a storage shared by the fleet, each host's part of a day's spend is kept too.
        self.host = host

    @staticmethod
    def _key(name: str, now: datetime, host: str | None = None) -> str:
        day = f"iris/spend/{_day(now)}/{name}"
        return day if host is None else f"{day}/host/{host}"

    def spent_by_host(self, names: list[str], host: str) -> dict[str, float]:
        """Today's spend of each of ``names`` on ``host`` (its part of the fleet's spend)."""
        now = datetime.now(UTC)
        try:
            return {
                name: round(self.storage.get(self._key(name, now, host)) / _NANO, 8)
                for name in [GLOBAL, *names]
            }
        except StorageError as error:
            warn_storage(error)
            return {}

    def spent_usd(self, name: str, now: datetime | None = None) -> float:
        """Today's spend of key ``name`` (``GLOBAL``: of the whole service)."""
        now = now or datetime.now(UTC)
        return self.storage.get(self._key(name, now)) / _NANO

    def spend(self, name: str, budget_usd: float | None, now: datetime | None = None) -> Spend:
        now = now or datetime.now(UTC)
        resets_at = next_reset(now).isoformat(timespec="seconds")
        return Spend(round(self.spent_usd(name, now), 8), budget_usd, resets_at)

    def global_spend(self, now: datetime | None = None) -> Spend:
        return self.spend(GLOBAL, self.global_budget_usd or None, now)

    def check(self, name: str, key_budget_usd: float | None) -> None:
        """``TooManyRequests`` when the key's or the service's budget for today is spent."""
        now = datetime.now(UTC)
        spent: list[tuple[str, float, float]] = []
        if key_budget_usd is None and not self.global_budget_usd:
            return
        try:
            # A spend that cannot be recorded would never reach the budget: check it is kept.
            if not self.storage.check():
                raise StorageError(RuntimeError(f"{type(self.storage).__name__} unavailable"))
            if key_budget_usd is not None:
                spent.append((f"key {name!r}", key_budget_usd, self.spent_usd(name, now)))
            if self.global_budget_usd:
                spent.append(("global", self.global_budget_usd, self.spent_usd(GLOBAL, now)))
        except StorageError as error:
            # A budget that cannot be read is not assumed unspent: money is not risked.
            warn_storage(error)
            raise ServiceUnavailable("Model budget cannot be checked now; retry later") from None
        for which, budget, used in spent:
            if used >= budget:
                reset = next_reset(now)
                raise TooManyRequests(
                    f"The daily model budget of {which} is spent (${used:.4f} of "
                    f"${budget:.2f}); it resets at {reset.isoformat(timespec='seconds')}. "
                    "Cached analyses are still served.",
                    retry_after=max(1, math.ceil((reset - now).total_seconds())),
                    details={
                        "limit": "budget",
                        "budget": "key" if which != "global" else "global",
                        "key": name,
                        "daily_budget_usd": budget,
                        "spent_today_usd": round(used, 8),
                        "resets_at": reset.isoformat(timespec="seconds"),
                    },
                )

    def record(self, name: str, cost_usd: float) -> None:
        """Add one model call's estimated cost to the key's and the service's day."""
        amount = round(cost_usd * _NANO)
        if amount <= 0:
            return
        now = datetime.now(UTC)
        try:
            self.storage.incr(self._key(name, now), _KEEP_S, amount)
            self.storage.incr(self._key(GLOBAL, now), _KEEP_S, amount)
            if self.host is not None:
                self.storage.incr(self._key(name, now, self.host), _KEEP_S, amount)
                self.storage.incr(self._key(GLOBAL, now, self.host), _KEEP_S, amount)
        except StorageError as error:
            warn_storage(error)
