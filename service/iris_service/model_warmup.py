"""Pay the model client's first-call costs when a worker starts, not in its first burst.

The OpenAI SDK defers work to the first request: ``client.responses`` imports its resource
modules and the first answer builds pydantic validators for the Response's union types.
Measured in one process: ~300-470 ms of CPU on the first analysis, ~5-10 ms after. Paid in
the first burst after a start, it is paid by every thread that calls the model at once while
the GIL is shared by hundreds of them, and a health check waited behind it (1.3 s in the first
256-analysis burst, 47 ms in the next; bench/capacity_bench.py).

So each worker makes one whole ``responses.create`` at start, to a throwaway client whose
transport answers in memory (``MockTransport``): no network, no key, nothing recorded. The
import and validator caches it fills are process-wide, so the worker's real client finds them
ready. A failure here is only logged: the worker still serves, and pays the cost later.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from iris_service.config import Settings
from iris_service.model_contract import INSTRUCTIONS, RESPONSE_FORMAT, parse_reply

log = logging.getLogger(__name__)

_REPLY = json.dumps(
    {
        "file_intent": "Warm-up.",
        "responsibility_blocks": [{"label": "Warm-up", "description": "-", "ranges": [[1, 1]]}],
    }
)
# The shape of a Responses API answer: a reasoning item, then the message with the reply.
_RESPONSE: dict[str, Any] = {
    "id": "resp_warmup",
    "object": "response",
    "created_at": 0,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "warmup",
    "output": [
        {"type": "reasoning", "id": "rs_warmup", "summary": []},
        {
            "type": "message",
            "id": "msg_warmup",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": _REPLY, "annotations": []}],
        },
    ],
    "parallel_tool_calls": True,
    "temperature": 1.0,
    "text": {"format": {"type": "json_schema", "name": "warmup", "schema": {}, "strict": True}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "reasoning": {"effort": "minimal", "summary": None},
    "usage": {
        "input_tokens": 1,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 1,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 2,
    },
}


def warm_model_client(settings: Settings) -> float:
    """One in-memory ``responses.create`` and reply parse; returns the seconds it took."""
    started = time.perf_counter()
    try:
        import httpx2  # the HTTP library the OpenAI SDK is built on (its dependency)
        import openai

        def answer(request: Any) -> Any:
            return httpx2.Response(200, json=_RESPONSE)

        client: Any = openai.OpenAI(  # Any: the same loose call as agent.py makes
            api_key="warmup",
            base_url="http://warmup.invalid/v1",
            max_retries=0,
            http_client=openai.DefaultHttpx2Client(transport=httpx2.MockTransport(answer)),
        )
        with client:  # the same calls as agent.py: the raw response, then its parse
            raw = client.responses.with_raw_response.create(
                model=settings.model,
                instructions=INSTRUCTIONS,
                input="1 | warm-up",
                reasoning={"effort": settings.reasoning_effort},
                max_output_tokens=settings.max_output_tokens,
                text=RESPONSE_FORMAT,
                store=False,
            )
            response = raw.parse()
        parse_reply(response.output_text)
    except Exception as error:  # never fatal: only the first burst's latency is at stake
        log.warning("model client warm-up failed: %s: %s", type(error).__name__, error)
    return time.perf_counter() - started
