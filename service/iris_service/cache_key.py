"""Cache keys: SHA-256 over everything that changes an analysis. The service and
``iris-service-admin`` both name entries through ``key_for``."""

from __future__ import annotations

import hashlib
import json
import re

from iris_service.config import Settings
from iris_service.model_contract import PROMPT_VERSION

KEY_RE = re.compile(r"^[0-9a-f]{64}$")


def valid_key(key: str) -> bool:
    return bool(KEY_RE.match(key))


def cache_key(
    normalized_source: str,
    *,
    language: str,
    model: str,
    reasoning_effort: str,
    prompt_version: str,
) -> str:
    """SHA-256 over the normalized source and everything else that changes the answer."""
    header = json.dumps(
        {
            "prompt_version": prompt_version,
            "model": model,
            "reasoning_effort": reasoning_effort,
            "language": language,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256()
    digest.update(header.encode())
    digest.update(b"\0")
    digest.update(normalized_source.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def key_for(settings: Settings, normalized_source: str, language: str) -> str:
    """The key of a ``source.normalize_source`` text under the current model settings."""
    return cache_key(
        normalized_source,
        language=language,
        model=settings.model,
        reasoning_effort=settings.reasoning_effort,
        prompt_version=PROMPT_VERSION,
    )
