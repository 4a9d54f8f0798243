"""WSGI: an ordinary cache hit is answered before Flask; every other request goes to Flask.

Most analyze requests are hits on this worker's memory tier, and for a hit Flask's own
request machinery (request context, URL map, Request and Response objects) cost more than
everything the service does to answer it: in one process, 69 us per request for a minimal
Flask app against 129 us for a hit through Flask with its metrics and EMF writes switched off.
Behind gunicorn that made hits about 0.6-0.7x the minimal app's throughput
(bench/service_serving.py).

Only a request that is certainly an ordinary hit is answered here: POST to the analyze path,
a JSON content type, a Content-Length within IRIS_MAX_BODY_BYTES, a known key, a valid body,
its entry in this worker's memory tier, and no CORS configured. Every check before the answer
is free of side effects, and the body read here is handed on, so anything else (a miss, any
error, a chunked body) reaches Flask exactly as it arrived and gets the one answer the API
defines for it. The key's request is counted, and its rate limit applied, only once the
answer is certain to be given here; the hit is accounted (EMF, metrics) by the same
``Analyzer`` code as a hit served through Flask, and the bytes of the answer are the same
(``tests/service/test_service_cache_hits.py``).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES

from iris_service.analysis import Analyzer, AnalyzeRequest
from iris_service.api import ANALYZE_PATH
from iris_service.api_keys import ClientKey
from iris_service.auth import HEADER
from iris_service.cache import CacheEntry
from iris_service.errors import INTERNAL_ERROR_MESSAGE, IrisError, error_document

log = logging.getLogger(__name__)

_KEY_ENVIRON = "HTTP_" + HEADER.upper().replace("-", "_")


def is_json(content_type: str) -> bool:
    """What Flask's ``request.is_json`` says of this Content-Type."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


class CacheHits:
    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        analyzer: Analyzer,
        dumps: Callable[..., str],
    ) -> None:
        self.app = app
        self.analyzer = analyzer
        self.dumps = dumps  # the Flask app's own JSON serializer (app.json.dumps)
        self.enabled = not analyzer.settings.cors_origins  # CORS headers are Flask's to add

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.monotonic()
        entry_and_request = self._remembered(environ)
        if entry_and_request is None:
            return self.app(environ, start_response)
        request, entry, client = entry_and_request
        try:
            self.analyzer.auth.count(client)
            answer = self.analyzer.answer_remembered(request, entry, started)
        except IrisError as error:  # over the key's rate: its 429, as Flask would answer it
            status, body, headers = error_document(error)
            return self._respond(start_response, status, body, headers)
        except Exception:  # counted already: answered here, as Flask answers the unexpected
            log.exception("unhandled error")
            return self._respond(start_response, 500, _INTERNAL_ERROR, {})
        return self._respond(start_response, 200, answer, {})

    def _remembered(
        self, environ: dict[str, Any]
    ) -> tuple[AnalyzeRequest, CacheEntry, ClientKey] | None:
        """The request, its remembered entry and its client, or None to leave it to Flask."""
        if not self.enabled or environ.get("PATH_INFO") != ANALYZE_PATH:
            return None
        if environ.get("REQUEST_METHOD") != "POST" or not is_json(environ.get("CONTENT_TYPE", "")):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:  # none (chunked) or not a number
            return None
        if not 0 <= length <= self.analyzer.settings.max_body_bytes:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # Flask reads the same bytes if we pass
        if len(body) != length:  # the client went away mid-body
            return None
        try:
            client = self.analyzer.auth.authenticate(environ.get(_KEY_ENVIRON))
            request = AnalyzeRequest.from_body(body)
        except IrisError:
            return None
        entry = self.analyzer.remembered(request)
        if entry is None:
            return None
        return request, entry, client

    def _respond(
        self,
        start_response: Callable[..., Any],
        status: int,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> list[bytes]:
        # What Flask's jsonify writes: compact JSON and a newline.
        data = (self.dumps(body, separators=(",", ":")) + "\n").encode()
        start_response(
            f"{status} {HTTP_STATUS_CODES[status].upper()}",  # as werkzeug writes it
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                *headers.items(),
            ],
        )
        return [data]


_INTERNAL_ERROR = {"success": False, "error": INTERNAL_ERROR_MESSAGE}
