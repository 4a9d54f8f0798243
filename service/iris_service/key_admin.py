"""``python -m iris_service.key_admin``: what each key has used on this host and today's spend
against its budget, as JSON on stdout (run by ``playbooks/keys.yml`` as the service user, with
the service's environment, for ``irisctl keys list``).

Exit codes: 0 success, 2 bad environment or an unusable keys file (``{"error": ...}``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from iris_service.api_keys import DEFAULT_NAME, KeysFileError, load_keys_file
from iris_service.budgets import Budgets
from iris_service.config import Settings
from iris_service.errors import ConfigError
from iris_service.key_usage import KeyUsage
from iris_service.store_admin import shared_key_usage
from iris_service.store_limits import open_limits_storage


def budget_summary(settings: Settings) -> dict[str, Any]:
    """Today's spend of the whole service against ``IRIS_DAILY_BUDGET_USD`` (for cache stats)."""
    budgets = Budgets(open_limits_storage(settings), settings.daily_budget_usd)
    return {**budgets.global_spend().as_dict(), "storage": _scope(settings)}


def _scope(settings: Settings) -> str:
    """``host``: counts are this host's own; ``shared``: one store for every host."""
    if settings.cache_url and not settings.rate_limit_storage:
        return "shared"  # the shared cache store (store_limits)
    return "host" if settings.limits_storage_uri.startswith("sqlite:") else "shared"


def key_report(settings: Settings) -> dict[str, Any]:
    budgets = Budgets(open_limits_storage(settings), settings.daily_budget_usd)
    usage = KeyUsage(settings.key_usage_file).read()
    named = {} if settings.api_keys_file is None else load_keys_file(settings.api_keys_file)
    limits = {key.name: key for key in named.values()}
    names = set(limits) | set(usage) | ({DEFAULT_NAME} if settings.api_keys else set())
    keys = {}
    for name in sorted(names):
        key = limits.get(name)
        budget = key.daily_budget_usd if key is not None else None
        keys[name] = {
            "requests": 0,
            "model_calls": 0,
            "cost_usd": 0.0,
            "last_used": None,
            **usage.get(name, {}),
            **budgets.spend(name, budget).as_dict(),
        }
    report = {
        "keys": keys,
        "global": budgets.global_spend().as_dict(),
        "default_rate_per_minute": settings.rate_limit_per_minute,
        "storage": _scope(settings),
    }
    shared = shared_key_usage(settings)  # the fleet's use per host, with IRIS_CACHE_URL
    if shared is not None:
        if "hosts" in shared:
            shared["spent_today_by_host"] = {
                host: budgets.spent_by_host(sorted(names), host)
                for host, names in shared["hosts"].items()
            }
        report["shared"] = shared
    return report


def main(argv: list[str] | None = None) -> int:
    try:
        report = key_report(Settings.from_env())
    except (ConfigError, KeysFileError) as error:
        print(json.dumps({"error": str(error)}))
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
