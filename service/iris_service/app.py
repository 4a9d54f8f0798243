"""The application factory."""

from __future__ import annotations

import logging

from flask import Flask

from iris_service import api
from iris_service._version import __version__
from iris_service.analysis import Analyzer
from iris_service.body_drain import DiscardUnreadBody
from iris_service.cache_hits import CacheHits
from iris_service.config import Settings
from iris_service.cpu_gate import CpuGateMiddleware
from iris_service.errors import register_error_handlers
from iris_service.model_warmup import warm_model_client

log = logging.getLogger(__name__)


def _use_gunicorn_logging() -> None:
    """Under gunicorn, write our log records to its error log, in its format (log_format.py)."""
    gunicorn_log = logging.getLogger("gunicorn.error")
    if gunicorn_log.handlers:
        ours = logging.getLogger("iris_service")
        ours.handlers = list(gunicorn_log.handlers)
        ours.setLevel(gunicorn_log.level)
        ours.propagate = False


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    _use_gunicorn_logging()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    service = Analyzer.from_settings(settings)
    app.extensions["iris"] = service
    service.agent.ensure_ready()  # fetch the OpenAI key now; health reports a failure
    # The SDK's first-call costs now, before this worker accepts a request (model_warmup).
    warmed_s = warm_model_client(settings)
    register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.wsgi_app = DiscardUnreadBody(app.wsgi_app)  # type: ignore[method-assign]
    # Ordinary cache hits are answered here, without Flask's request machinery (cache_hits).
    app.wsgi_app = CacheHits(app.wsgi_app, service, app.json.dumps)  # type: ignore[method-assign]
    # Outermost: health never waits for a slot; everything else runs holding one (cpu_gate).
    app.wsgi_app = CpuGateMiddleware(app.wsgi_app, service.gate)  # type: ignore[method-assign]
    if settings.cors_origins:
        from flask_cors import CORS

        CORS(
            app,
            resources={r"/api/*": {"origins": list(settings.cors_origins)}},
            allow_headers=["Content-Type", "x-api-key"],
            methods=["GET", "POST", "OPTIONS"],
        )
    log.info(
        "iris-service %s ready: env=%s, model=%s, cache=%s, model client warmed in %.0f ms",
        __version__,
        settings.env,
        settings.model,
        settings.cache_dir,
        warmed_s * 1000,
    )
    return app
