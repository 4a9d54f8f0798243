"""HTTP routes; thin: authenticate, hand the body to the analyzer, render JSON."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from iris_service._version import __version__
from iris_service.analysis import Analyzer
from iris_service.auth import HEADER
from iris_service.errors import BadRequest, PayloadTooLarge

bp = Blueprint("iris", __name__, url_prefix="/api/iris")
# Answered before Flask when it is an ordinary cache hit (cache_hits).
ANALYZE_PATH = "/api/iris/analyze"


def analyzer() -> Analyzer:
    return current_app.extensions["iris"]


def read_body(limit: int) -> bytes:
    """The request body, or 413 when it is larger than ``limit``.

    Werkzeug enforces the limit on a body without Content-Length (chunked) by silently
    stopping at ``limit`` bytes: a byte left after that means the body was too large.
    """
    data = request.get_data(cache=False)
    too_large = (
        request.content_length is None
        and len(data) >= limit
        and request.environ["wsgi.input"].read(1)
    )
    if too_large:
        raise PayloadTooLarge("Request body too large")
    return data


@bp.post("/analyze")
def analyze() -> Response:
    service = analyzer()
    client = service.auth.admit(request.headers.get(HEADER))
    if not request.is_json:
        raise BadRequest("Content-Type must be application/json")
    return jsonify(service.handle(read_body(service.settings.max_body_bytes), client))


@bp.get("/health")
def health() -> tuple[Response, int]:
    service = analyzer()
    ready = service.agent.ensure_ready()
    problems = []
    if service.settings.auth_misconfigured:
        problems.append("IRIS_API_KEY is not set while IRIS_ENV=prod")
    if not ready:
        problems.append(f"model client not configured: {service.agent.error or 'unknown'}")
    body: dict[str, object] = {
        "status": "ok" if not problems else "unavailable",
        "agent_ready": ready,
        "agent_error": service.agent.error is not None,
        "version": __version__,
    }
    if problems:
        body["errors"] = problems
    shared = service.cache.shared
    if shared is not None:
        # A store outage degrades, it does not take the host out: still 200 (see store.py).
        store_check = shared.store.check()
        body["checks"] = {"cache_store": store_check}
        if not store_check["ok"] and not problems:
            body["status"] = "degraded"
    return jsonify(body), 200 if not problems else 503
