"""The model call: one OpenAI Responses API request with strict structured output."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iris_service.config import Settings
from iris_service.errors import ModelError, ModelTimeout, ServiceUnavailable
from iris_service.secrets import SecretError, fetch_openai_key
from iris_service.source import number_lines

log = logging.getLogger(__name__)

# Part of the cache key: change it whenever the prompt or the schema changes.
PROMPT_VERSION = "2026-11-24.1"

INSTRUCTIONS = """\
You help a developer who is opening a source file for the first time.
Describe the file in two parts.

file_intent: what the file is for, as one plain sentence of at most 20 words.

responsibility_blocks: the jobs the file does. Each block is a complete conceptual unit:
a whole function, class, or group of statements that serve one purpose; never half of one.
List the blocks in the order a newcomer should read them.
- label: a short noun phrase of two to five words, such as "Request validation".
- description: one or two sentences on what the block does and why it is there.
- ranges: [first, last] pairs of line numbers, both included, taken from the numbers
  printed before " | " on each line. Use several pairs when a block's parts are apart.
  A line belongs to at most one block.
A small file (under about 40 lines) gets one or two blocks; a large one rarely needs more
than eight. Do not quote the code back."""

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["file_intent", "responsibility_blocks"],
    "properties": {
        "file_intent": {"type": "string"},
        "responsibility_blocks": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["label", "description", "ranges"],
                "properties": {
                    "label": {"type": "string"},
                    "description": {"type": "string"},
                    "ranges": {
                        "type": "array",
                        "items": {"type": "array", "items": {"type": "integer"}},
                    },
                },
            },
        },
    },
}

# A failed key fetch is retried at most this often (health checks and requests trigger it).
KEY_RETRY_INTERVAL_S = 30.0
_RETRY_BACKOFF_S = 0.5


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class ModelAnswer:
    file_intent: str
    blocks: list[dict[str, Any]]
    usage: Usage


def estimate_cost(settings: Settings, input_tokens: int, cached: int, output: int) -> float:
    """Dollars for one call; cached input tokens are part of input_tokens, billed cheaper."""
    uncached = max(input_tokens - cached, 0)
    cost = (
        uncached * settings.price_input_per_m
        + cached * settings.price_cached_input_per_m
        + output * settings.price_output_per_m
    ) / 1_000_000
    return round(cost, 8)


def build_prompt(normalized_source: str, language: str) -> str:
    return f"Language: {language}\n\nSource, one numbered line each:\n" + number_lines(
        normalized_source
    )


def estimate_tokens(text: str) -> int:
    """Rough count (about four characters a token) for metrics before the call."""
    return (len(text) + 3) // 4


def _usage_from(response: Any, settings: Settings) -> Usage:
    usage = getattr(response, "usage", None)
    if usage is None:
        return Usage()
    input_tokens = int(getattr(usage, "input_tokens", 0) or 0)
    details = getattr(usage, "input_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    output = int(getattr(usage, "output_tokens", 0) or 0)
    return Usage(
        input_tokens, cached, output, estimate_cost(settings, input_tokens, cached, output)
    )


def _parse_answer(response: Any) -> tuple[str, list[dict[str, Any]]]:
    status = getattr(response, "status", None)
    if status not in (None, "completed"):
        raise ModelError(f"Model answer unusable: response status {status!r}")
    try:
        # A 200 that is not a Response object (an HTML page from a proxy) reaches us as a str.
        data = json.loads(response.output_text)
    except (AttributeError, TypeError, ValueError):
        raise ModelError("Model answer unusable: not valid JSON") from None
    if not isinstance(data, dict):
        raise ModelError("Model answer unusable: not a JSON object")
    intent, blocks = data.get("file_intent"), data.get("responsibility_blocks")
    if not isinstance(intent, str) or not isinstance(blocks, list):
        raise ModelError("Model answer unusable: missing file_intent or responsibility_blocks")
    return " ".join(intent.split()), blocks


class Agent:
    """Owns the OpenAI client; built lazily so nothing touches the network at import."""

    def __init__(
        self, settings: Settings, key_loader: Callable[[Settings], str] = fetch_openai_key
    ) -> None:
        self.settings = settings
        self._key_loader = key_loader
        self._lock = threading.Lock()
        self._client: Any = None
        self._error: str | None = None
        self._last_attempt = float("-inf")

    @property
    def ready(self) -> bool:
        return self._client is not None

    @property
    def error(self) -> str | None:
        return self._error

    def ensure_ready(self) -> bool:
        """Build the client if we can; a failed attempt is retried only after an interval."""
        if self._client is not None:
            return True
        with self._lock:
            if self._client is not None:
                return True
            if time.monotonic() - self._last_attempt < KEY_RETRY_INTERVAL_S:
                return False
            self._last_attempt = time.monotonic()
            try:
                key = self._key_loader(self.settings)
                from openai import OpenAI  # heavy import, paid once per worker on first use

                self._client = OpenAI(
                    api_key=key,
                    base_url=self.settings.openai_base_url,
                    max_retries=0,  # we retry ourselves, inside the request deadline
                    timeout=self.settings.model_timeout_s,
                )
                self._error = None
            except SecretError as error:
                self._error = str(error)
                log.error("model client not configured: %s", error)
            return self._client is not None

    def analyze(self, prompt: str, deadline: float) -> ModelAnswer:
        """One analysis of a ``build_prompt`` prompt; no attempt may run past ``deadline``
        (a time.monotonic() value)."""
        import openai

        if not self.ensure_ready():
            raise ServiceUnavailable(
                "Model client is not configured" + (f": {self._error}" if self._error else "")
            )
        attempts = self.settings.model_retries + 1
        last_error: Exception | None = None
        for attempt in range(attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            try:
                response = self._client.responses.create(
                    model=self.settings.model,
                    instructions=INSTRUCTIONS,
                    input=prompt,
                    reasoning={"effort": self.settings.reasoning_effort},
                    max_output_tokens=self.settings.max_output_tokens,
                    text={
                        "format": {
                            "type": "json_schema",
                            "name": "iris_analysis",
                            "strict": True,
                            "schema": RESPONSE_SCHEMA,
                        }
                    },
                    store=False,
                    timeout=min(self.settings.model_timeout_s, remaining),
                )
            except openai.APITimeoutError:
                last_error = ModelTimeout("Model call timed out")
                log.warning("model call timed out (attempt %d/%d)", attempt + 1, attempts)
            except (openai.APIConnectionError, openai.RateLimitError) as error:
                last_error = ModelError(f"Model call failed: {type(error).__name__}")
                log.warning("model call failed (attempt %d/%d): %s", attempt + 1, attempts, error)
            except openai.APIStatusError as error:
                last_error = ModelError(f"Model returned an error (HTTP {error.status_code})")
                log.warning(
                    "model returned HTTP %s (attempt %d/%d)",
                    error.status_code,
                    attempt + 1,
                    attempts,
                )
                if error.status_code < 500:
                    break  # a request error will not get better on retry
            else:
                intent, blocks = _parse_answer(response)
                return ModelAnswer(intent, blocks, _usage_from(response, self.settings))
            if attempt + 1 < attempts:
                pause = min(_RETRY_BACKOFF_S * 2**attempt, deadline - time.monotonic() - 0.05)
                if pause > 0:
                    time.sleep(pause)
        if isinstance(last_error, ModelError | ModelTimeout):
            raise last_error
        raise ModelTimeout("Model call timed out (request deadline reached)")
