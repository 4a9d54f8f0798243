"""Ordinary cache hits are answered before Flask (iris_service/cache_hits.py): with the same
bytes and the same accounting as through Flask, and every other request reaches Flask as it
arrived."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from iris_service.app import create_app
from iris_service.cache_hits import CacheHits
from iris_service.config import Settings
from iris_service.metrics import CacheMetrics
from service_helpers import analyze_body, sample_source, wait_until

ANALYZE = "/api/iris/analyze"
KEY = "hits-key"


def app_and_hits(settings: Settings) -> tuple[Any, CacheHits, list[str]]:
    """The app, its CacheHits layer, and the paths that layer passed on to Flask."""
    app = create_app(settings.with_changes(api_keys=(KEY,)))
    hits = app.wsgi_app.app  # CpuGateMiddleware(CacheHits(...))
    assert isinstance(hits, CacheHits)
    passed: list[str] = []
    flask_side = hits.app

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        passed.append(environ["PATH_INFO"])
        return flask_side(environ, start_response)

    hits.app = counting
    return app, hits, passed


def post(client: Any, body: Any, key: str | None = KEY, **kwargs: Any) -> Any:
    headers = {"x-api-key": key} if key is not None else {}
    return client.post(ANALYZE, json=body, headers=headers, **kwargs)


def test_a_hit_is_answered_before_flask_with_the_bytes_flask_would_send(settings):
    app, hits, passed = app_and_hits(settings)
    client = app.test_client()
    body = analyze_body(sample_source("same"), metadata={"file": "a.py", "n": 1.5, "é": "ü"})
    assert post(client, body).status_code == 200  # a miss: Flask, the model
    assert passed == [ANALYZE]
    fast = post(client, body)
    assert passed == [ANALYZE]  # the hit did not reach Flask
    hits.enabled = False
    through_flask = post(client, body)
    assert passed == [ANALYZE, ANALYZE]
    assert fast.status_code == through_flask.status_code == 200
    assert fast.data == through_flask.data
    assert fast.headers == through_flask.headers
    answer = json.loads(fast.data)
    assert answer["metadata"]["cache_hit"] == 1 and answer["metadata"]["file"] == "a.py"


def test_a_hit_is_accounted_as_through_flask(settings):
    app, hits, _ = app_and_hits(settings)
    client = app.test_client()
    body = analyze_body(sample_source("counted"))
    assert post(client, body).status_code == 200
    assert post(client, body).status_code == 200  # before Flask
    hits.enabled = False
    assert post(client, body).status_code == 200  # through Flask
    metrics = CacheMetrics(settings.metrics_file)
    assert wait_until(lambda: metrics.read()["hits"] == 2)
    assert metrics.read()["misses"] == 1
    emf = Path(settings.emf_file)

    def events() -> list[dict[str, Any]]:
        return [json.loads(line) for line in emf.read_text().splitlines()] if emf.exists() else []

    assert wait_until(lambda: len(events()) == 9)  # requested, started, completed: 3 each
    started = [e for e in events() if e["event"] == "analysis_started"]
    assert [e["CacheHit"] for e in started] == [0, 1, 1]
    usage = app.extensions["iris"].auth.usage
    usage.flush()
    assert usage.read()["default"]["requests"] == 3


@pytest.mark.parametrize(
    ("label", "request_kwargs", "status"),
    [
        ("no key", {"key": None}, 401),
        ("unknown key", {"key": "nope"}, 401),
        ("not JSON", {"data": b"{", "content_type": "application/json"}, 400),
        ("form content type", {"data": b"{}", "content_type": "text/plain"}, 400),
        ("missing field", {"json": {"filename": "a.py", "language": "python"}}, 400),
    ],
)
def test_anything_but_an_ordinary_hit_reaches_flask_as_it_arrived(
    settings, label, request_kwargs, status
):
    app, _, passed = app_and_hits(settings)
    client = app.test_client()
    key = request_kwargs.pop("key", KEY)
    body = request_kwargs.pop("json", analyze_body("x = 1\n"))
    assert post(client, analyze_body("x = 1\n")).status_code == 200  # now in memory
    headers = {"x-api-key": key} if key is not None else {}
    if "data" in request_kwargs:
        answer = client.post(ANALYZE, headers=headers, **request_kwargs)
    else:
        answer = client.post(ANALYZE, json=body, headers=headers)
    assert answer.status_code == status, label
    assert answer.get_json()["success"] is False
    assert passed == [ANALYZE, ANALYZE], label


def test_a_request_passed_on_is_counted_once(settings):
    app, _, passed = app_and_hits(settings)
    client = app.test_client()
    assert client.post(ANALYZE, data=b"{", headers={"x-api-key": KEY}).status_code == 400
    assert post(client, analyze_body("fresh = 1\n")).status_code == 200  # a miss
    assert passed == [ANALYZE, ANALYZE]
    usage = app.extensions["iris"].auth.usage
    usage.flush()
    assert usage.read()["default"]["requests"] == 2


def test_with_cors_configured_every_request_goes_through_flask(settings):
    app, _, passed = app_and_hits(settings.with_changes(cors_origins=("https://example.com",)))
    client = app.test_client()
    body = analyze_body("x = 2\n")
    assert post(client, body).status_code == 200
    headers = {"x-api-key": KEY, "Origin": "https://example.com"}
    hit = client.post(ANALYZE, json=body, headers=headers)
    assert hit.get_json()["metadata"]["cache_hit"] == 1
    assert hit.headers["Access-Control-Allow-Origin"] == "https://example.com"
    assert passed == [ANALYZE, ANALYZE]
