"""Client authentication: the x-api-key header against IRIS_API_KEY (several keys allowed)."""

from __future__ import annotations

import hmac

from iris_service.config import Settings
from iris_service.errors import ServiceUnavailable, Unauthorized

HEADER = "x-api-key"


def check_api_key(settings: Settings, provided: str | None) -> None:
    """Raise unless ``provided`` is an accepted key; no keys configured means dev mode."""
    if settings.auth_misconfigured:
        raise ServiceUnavailable("Service misconfigured: IRIS_API_KEY is not set")
    if not settings.api_keys:
        return
    if not provided:
        raise Unauthorized("Missing x-api-key header")
    given = provided.encode()
    matched = False
    for key in settings.api_keys:  # compare with every key: the time spent reveals nothing
        matched |= hmac.compare_digest(given, key.encode())
    if not matched:
        raise Unauthorized("Invalid API key")
