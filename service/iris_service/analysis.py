"""One analysis request end to end: validate, normalize, cache or model, clean, account."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from iris_service.agent import Agent
from iris_service.api_keys import ClientKey
from iris_service.auth import ANONYMOUS, ClientAuth
from iris_service.cache import AnalysisCache, CacheEntry, DiskCache, MemoryCache
from iris_service.cache_key import key_for
from iris_service.cache_shared import SharedTier
from iris_service.config import SUPPORTED_LANGUAGES, Settings
from iris_service.cpu_gate import CpuGate
from iris_service.emf import EmfEmitter
from iris_service.errors import BadRequest, IrisError, ModelError
from iris_service.metrics import CacheMetrics
from iris_service.model_contract import (
    INSTRUCTIONS,
    PROMPT_VERSION,
    build_prompt,
    estimate_tokens,
)
from iris_service.ranges import clean_blocks
from iris_service.source import line_count, normalize_source
from iris_service.store import shared_store
from iris_service.store_figures import shared_figures

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, float]]  # an EMF event's name and values (emf.EVENTS)
_HIT_STARTED: Event = ("analysis_started", {"TotalPromptTokens": 0, "CacheHit": 1})


def _reject_constant(name: str) -> float:
    # NaN and Infinity are not JSON; echoed back in metadata they would make our answer invalid.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{text} is out of range")
    return value


def _has_lone_surrogate(text: str) -> bool:
    """JSON may escape half a UTF-16 pair ("\\ud800"); such text cannot be sent on as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass(frozen=True)
class AnalyzeRequest:
    filename: str
    language: str
    source_code: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, raw: bytes) -> AnalyzeRequest:
        try:
            body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            raise BadRequest("Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object")
        for name in ("filename", "language", "source_code"):
            if name not in body or body[name] is None:
                raise BadRequest(f"Missing required field: {name}")
            if not isinstance(body[name], str):
                raise BadRequest(f"Field {name} must be a string")
        if body["language"] not in SUPPORTED_LANGUAGES:
            raise BadRequest(
                f"Unsupported language: {body['language']!r} "
                f"(supported: {', '.join(sorted(SUPPORTED_LANGUAGES))})"
            )
        if _has_lone_surrogate(body["source_code"]):
            raise BadRequest("Field source_code is not valid Unicode (lone surrogate)")
        metadata = body.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise BadRequest("Field metadata must be an object")
        return cls(body["filename"], body["language"], body["source_code"], metadata)


def build_cache(settings: Settings) -> AnalysisCache:
    store = shared_store(settings)
    return AnalysisCache(
        MemoryCache(settings.memory_cache_entries, settings.cache_ttl_s),
        DiskCache(settings.disk_cache_dir, settings.cache_ttl_s, settings.cache_max_bytes),
        SharedTier(store, settings.cache_ttl_s) if store is not None else None,
    )


class Analyzer:
    def __init__(
        self,
        settings: Settings,
        agent: Agent,
        cache: AnalysisCache,
        metrics: CacheMetrics,
        emf: EmfEmitter,
        auth: ClientAuth | None = None,
        gate: CpuGate | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth or ClientAuth(settings)
        # Held by the request (cpu_gate.CpuGateMiddleware); given back while it waits.
        self.gate = gate or CpuGate()
        self.agent = agent
        self.cache = cache
        self.metrics = metrics
        self.emf = emf

    @classmethod
    def from_settings(cls, settings: Settings) -> Analyzer:
        return cls(
            settings,
            Agent(settings),
            build_cache(settings),
            CacheMetrics(settings.metrics_file, shared_figures(settings)),
            EmfEmitter(settings),
            ClientAuth(settings),
        )

    def handle(self, raw_body: bytes, client: ClientKey = ANONYMOUS) -> dict[str, Any]:
        """Answer one analyze request; every failure is reported to EMF, then re-raised."""
        started = time.monotonic()
        try:
            return self.analyze(AnalyzeRequest.from_body(raw_body), started, client)
        except Exception as error:
            self.emf.emit(
                "analysis_failed",
                {
                    "FailureCount": 1,
                    "LatencyUntilFailureMs": round((time.monotonic() - started) * 1000, 1),
                },
                error_type=error.error_type if isinstance(error, IrisError) else "InternalError",
            )
            raise

    def analyze(
        self, request: AnalyzeRequest, started: float, client: ClientKey = ANONYMOUS
    ) -> dict[str, Any]:
        source = request.source_code
        self.emf.emit(*self._requested(source))
        normalized = normalize_source(source)
        if not normalized.strip():  # also a numbered empty file: "1 | "
            self.emf.emit(*self._completed(started, None, 0))
            return {
                "success": True,
                "file_intent": "Empty file",
                "responsibility_blocks": [],
                "metadata": {
                    **request.metadata,
                    **self._usage_metadata(None, hit=False),
                    "skipped": "empty_file",
                },
            }
        key = key_for(self.settings, normalized, request.language)
        deadline = started + self.settings.request_deadline_s

        def compute() -> CacheEntry:  # only on a miss: the budgets guard model calls alone
            self.auth.check_budget(client)
            entry = self._call_model(key, normalized, request.language, deadline)
            self.auth.record_model_call(client, float(entry.usage["cost_usd"]))
            return entry

        entry, hit = self.cache.get_or_compute(key, compute, deadline, self.gate.released)
        if hit:
            self.metrics.record_hit(float(entry.usage.get("cost_usd", 0.0)))
            self.emf.emit_together(
                [_HIT_STARTED, self._completed(started, None, len(entry.responsibility_blocks))]
            )
        else:
            self.emf.emit(*self._completed(started, entry, len(entry.responsibility_blocks)))
        return self._answer(request, entry, hit)

    def remembered(self, request: AnalyzeRequest) -> CacheEntry | None:
        """The entry answering ``request`` when this worker's memory tier holds it (no I/O);
        None for anything else (not in memory, an empty file)."""
        normalized = normalize_source(request.source_code)
        if not normalized.strip():
            return None
        return self.cache.remembered(key_for(self.settings, normalized, request.language))

    def answer_remembered(
        self, request: AnalyzeRequest, entry: CacheEntry, started: float
    ) -> dict[str, Any]:
        """The answer to ``request`` from its ``remembered`` entry, accounted (EMF, metrics)
        exactly as ``analyze`` accounts a cache hit (its three events in one write)."""
        self.metrics.record_hit(float(entry.usage.get("cost_usd", 0.0)))
        self.emf.emit_together(
            [
                self._requested(request.source_code),
                _HIT_STARTED,
                self._completed(started, None, len(entry.responsibility_blocks)),
            ]
        )
        return self._answer(request, entry, hit=True)

    @staticmethod
    def _requested(source: str) -> Event:
        return (
            "analysis_requested",
            {"CodeLengthChars": len(source), "EstimatedInputTokens": estimate_tokens(source)},
        )

    def _answer(self, request: AnalyzeRequest, entry: CacheEntry, hit: bool) -> dict[str, Any]:
        return {
            "success": True,
            "file_intent": entry.file_intent,
            "responsibility_blocks": entry.responsibility_blocks,
            "metadata": {
                **request.metadata,
                **self._usage_metadata(entry if not hit else None, hit),
            },
        }

    def _call_model(self, key: str, normalized: str, language: str, deadline: float) -> CacheEntry:
        prompt = build_prompt(normalized, language)  # built once: it copies the whole source
        prompt_tokens = estimate_tokens(INSTRUCTIONS) + estimate_tokens(prompt)
        self.emf.emit("analysis_started", {"TotalPromptTokens": prompt_tokens, "CacheHit": 0})
        try:
            # seconds of waiting on the model, without the gate; the answer parsed with it
            answer = self.agent.analyze(prompt, deadline, waiting=self.gate.released)
            raw_blocks = [block.model_dump() for block in answer.blocks]
            blocks = clean_blocks(raw_blocks, line_count(normalized))
            if not blocks:
                raise ModelError("Model answer unusable: no valid line ranges")
            if not answer.file_intent:
                raise ModelError("Model answer unusable: empty file intent")
        except IrisError:
            self.metrics.record_model_error()
            raise
        usage = answer.usage
        self.metrics.record_model_call(
            usage.input_tokens, usage.cached_tokens, usage.output_tokens, usage.cost_usd
        )
        return CacheEntry(
            key=key,
            file_intent=answer.file_intent,
            responsibility_blocks=blocks,
            created_at=time.time(),
            model=self.settings.model,
            prompt_version=PROMPT_VERSION,
            usage={
                "input_tokens": usage.input_tokens,
                "cached_tokens": usage.cached_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": usage.cost_usd,
            },
        )

    @staticmethod
    def _usage_metadata(spent: CacheEntry | None, hit: bool) -> dict[str, Any]:
        """What this request spent: nothing on a cache hit or an empty file."""
        usage = spent.usage if spent is not None else {}
        return {
            "input_tokens": int(usage.get("input_tokens", 0)),
            "output_tokens": int(usage.get("output_tokens", 0)),
            "estimated_cost_usd": float(usage.get("cost_usd", 0.0)),
            "cache_hit": 1 if hit else 0,
        }

    @staticmethod
    def _completed(started: float, spent: CacheEntry | None, block_count: int) -> Event:
        usage = spent.usage if spent is not None else {}
        return (
            "analysis_completed",
            {
                "TotalLatencyMs": round((time.monotonic() - started) * 1000, 1),
                "InputTokens": int(usage.get("input_tokens", 0)),
                "OutputTokens": int(usage.get("output_tokens", 0)),
                "EstimatedCostUsd": float(usage.get("cost_usd", 0.0)),
                "ResponsibilityBlockCount": block_count,
            },
        )
