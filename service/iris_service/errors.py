"""Typed errors; one handler turns every one of them (and every HTTP error) into JSON."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class IrisError(Exception):
    """An error with an HTTP status and a message safe to show the client."""

    status = 500
    error_type = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(IrisError):
    error_type = "ConfigError"


class BadRequest(IrisError):
    status = 400
    error_type = "BadRequest"


class Unauthorized(IrisError):
    status = 401
    error_type = "Unauthorized"


class PayloadTooLarge(IrisError):
    status = 413
    error_type = "PayloadTooLarge"


class TooManyRequests(IrisError):
    """Over a key's rate limit or a spent budget: 429 with ``Retry-After`` and what was hit."""

    status = 429
    error_type = "TooManyRequests"

    def __init__(self, message: str, retry_after: int, details: dict[str, object]) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.details = details


class ServiceUnavailable(IrisError):
    """The service cannot analyze now: no model client, or it is misconfigured."""

    status = 503
    error_type = "ServiceUnavailable"


class ModelError(IrisError):
    """The model answered with an error or an answer we cannot use."""

    status = 502
    error_type = "ModelError"


class ModelTimeout(IrisError):
    status = 504
    error_type = "ModelTimeout"


# What a client is told of an unexpected error (here, and by cache_hits before Flask).
INTERNAL_ERROR_MESSAGE = "Internal server error"


def error_response(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"success": False, "error": message}), status


def error_document(error: IrisError) -> tuple[int, dict[str, object], dict[str, str]]:
    """Status, JSON body and extra headers of the answer to ``error`` (Flask's handler below,
    and the cache-hit path that answers before Flask, ``cache_hits``)."""
    body: dict[str, object] = {"success": False, "error": error.message}
    if isinstance(error, TooManyRequests):
        return 429, {**body, **error.details}, {"Retry-After": str(error.retry_after)}
    return error.status, body, {}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(IrisError)
    def _iris_error(error: IrisError) -> tuple[Response, int]:
        status, body, headers = error_document(error)
        response = jsonify(body)
        response.headers.update(headers)
        return response, status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        if status == 413:
            return error_response(413, "Request body too large")
        if status == 400:
            return error_response(400, "Request body is not valid JSON")
        if status == 404:
            return error_response(404, f"Not found: {request.method} {request.path}")
        if status == 405:
            return error_response(405, f"Method {request.method} not allowed on {request.path}")
        return error_response(status, error.name)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, INTERNAL_ERROR_MESSAGE)
