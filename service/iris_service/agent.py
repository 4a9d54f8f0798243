"""The model call's transport: the OpenAI client, one Responses API request per attempt,
retries and deadlines. What is asked and what is accepted back is ``model_contract``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from iris_service.config import Settings
from iris_service.errors import ModelError, ModelTimeout, ServiceUnavailable
from iris_service.model_contract import (
    INSTRUCTIONS,
    RESPONSE_FORMAT,
    UNUSABLE,
    ResponsibilityBlock,
    parse_reply,
)
from iris_service.secrets import SecretError, fetch_openai_key

log = logging.getLogger(__name__)

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
    blocks: list[ResponsibilityBlock]
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


def _answer_from(response: Any, settings: Settings) -> ModelAnswer:
    status = getattr(response, "status", None)
    if status not in (None, "completed"):
        raise ModelError(f"{UNUSABLE}: response status {status!r}")
    # A 200 that is not a Response object (an HTML page from a proxy) reaches us as a str.
    reply = parse_reply(getattr(response, "output_text", None))
    return ModelAnswer(
        reply.file_intent, reply.responsibility_blocks, _usage_from(response, settings)
    )


class CallWaits(threading.local):
    """What the model call running in this thread wraps its network waits in."""

    waiting: Callable[[], AbstractContextManager[None]] = nullcontext


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
        self._waits = CallWaits()

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

                from iris_service.model_transport import waiting_http_client

                self._client = OpenAI(
                    api_key=key,
                    base_url=self.settings.openai_base_url,
                    max_retries=0,  # we retry ourselves, inside the request deadline
                    timeout=self.settings.model_timeout_s,
                    http_client=waiting_http_client(self._waits),
                )
                self._error = None
            except SecretError as error:
                self._error = str(error)
                log.error("model client not configured: %s", error)
            return self._client is not None

    def analyze(
        self,
        prompt: str,
        deadline: float,
        waiting: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> ModelAnswer:
        """One analysis of a ``model_contract.build_prompt`` prompt; no attempt may run past
        ``deadline`` (a time.monotonic() value).

        ``waiting`` wraps only what waits (the network exchange, a retry's pause, the first
        secret read): the request's cpu_gate is given back there and taken again for the
        Python work around it. The SDK's own work on a call (building the request, reading
        and validating the answer) is Python work too, so only the transport's send-and-wait
        and its body reads run inside ``waiting`` (``model_transport``). Done outside the
        gate, that work of a hundred analyses starting or answered together made a hundred
        threads take turns on the GIL, and a health check waited its turn behind them
        (iris_service/cpu_gate.py).
        """
        import openai

        with waiting():
            ready = self.ensure_ready()
        if not ready:
            raise ServiceUnavailable(
                "Model client is not configured" + (f": {self._error}" if self._error else "")
            )
        attempts = self.settings.model_retries + 1
        last_error: Exception | None = None
        for attempt in range(attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            self._waits.waiting = waiting  # the transport waits inside it (model_transport)
            try:
                raw = self._client.responses.with_raw_response.create(
                    model=self.settings.model,
                    instructions=INSTRUCTIONS,
                    input=prompt,
                    reasoning={"effort": self.settings.reasoning_effort},
                    max_output_tokens=self.settings.max_output_tokens,
                    text=RESPONSE_FORMAT,
                    store=False,
                    timeout=min(self.settings.model_timeout_s, remaining),
                )
                response = raw.parse()
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
                return _answer_from(response, self.settings)
            finally:
                self._waits.waiting = nullcontext
            if attempt + 1 < attempts:
                pause = min(_RETRY_BACKOFF_S * 2**attempt, deadline - time.monotonic() - 0.05)
                if pause > 0:
                    with waiting():
                        time.sleep(pause)
        if isinstance(last_error, ModelError | ModelTimeout):
            raise last_error
        raise ModelTimeout("Model call timed out (request deadline reached)")
