"""One JSON error shape, one table from error codes to HTTP statuses.

``{"error": {"code": "NOT_FOUND", "message": "model 'x' does not exist"}}``
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from errors import RegistryError
from storage.disk import is_full, storage_full

log = logging.getLogger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "REQUEST_TIMEOUT": 408,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409,
    "DATA_CORRUPTED": 409,
    "TOO_LARGE": 413,
    "INSUFFICIENT_STORAGE": 507,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "CONFIGURATION_ERROR": 500,
    "PROVIDER_ERROR": 502,
    "UNAVAILABLE": 503,
    "PROVIDER_TIMEOUT": 504,
}

# Flask/werkzeug's own errors, spoken in the same codes.
CODE_BY_HTTP_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT", 409: "FAILED_PRECONDITION",
    413: "TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 429: "RESOURCE_EXHAUSTED",
}


def error_response(code: str, message: str, details: dict[str, Any] | None = None,
                   status: int | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return jsonify(error=body), status or STATUS_BY_CODE.get(code, 500)


def describe_validation_error(err: ValidationError) -> str:
    """'name: String should match pattern ...; tags.x: Input should be a valid string'."""
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    return "; ".join(parts) or "invalid request"


def bad_text_message(err: Exception) -> str | None:
    """Text the database cannot take is bad input, wherever it came from (path, query, body):
    lone UTF-16 surrogates (JSON allows "\\ud800"; UTF-8 cannot encode it); storage
    translates its own (NUL characters). None for any other exception."""
    if isinstance(err, UnicodeEncodeError) and err.reason == "surrogates not allowed":
        return ("the request holds a lone UTF-16 surrogate (such as \\ud800): not valid "
                "Unicode text")
    return None


# Path prefixes whose errors other protocols' clients parse (``api/protocol_errors.py``): an
# error raised before any of their endpoints matched (a 404 on an unknown path) is answered in
# their shape too.
PREFIX_ERROR_HANDLERS: dict[str, Callable[[Exception], tuple[Response, int]]] = {}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RegistryError)
    def _domain(err: RegistryError):  # type: ignore[no-untyped-def]
        if "incident" in err.details:   # the details are in the log under that incident
            log.warning("request %s: %s, incident %s", getattr(g, "request_id", "-"),
                        err.code, err.details["incident"])
        return error_response(err.code, err.message, err.details)

    @app.errorhandler(ValidationError)
    def _validation(err: ValidationError):  # type: ignore[no-untyped-def]
        return error_response("INVALID_ARGUMENT", describe_validation_error(err))

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):  # type: ignore[no-untyped-def]
        for prefix, handler in PREFIX_ERROR_HANDLERS.items():
            if request.path.startswith(prefix):
                return handler(err)
        status = err.code or 500
        code = CODE_BY_HTTP_STATUS.get(status, "INTERNAL")
        message = {413: "request body too large", 404: "no such endpoint",
                   405: "method not allowed on this endpoint"}.get(status, err.description)
        response, status = error_response(code, message or err.name, status=status)
        if status == 405 and err.get_response().headers.get("Allow"):
            response.headers["Allow"] = err.get_response().headers["Allow"]
        return response, status

    # A lone UTF-16 surrogate (JSON allows "\ud800"; UTF-8 cannot encode it) that fails to
    # encode outside the database (storage translates its own: ``storage.database``).
    @app.errorhandler(UnicodeEncodeError)
    def _unencodable(err: UnicodeEncodeError):  # type: ignore[no-untyped-def]
        if err.reason != "surrogates not allowed":
            return _unexpected(err)
        return error_response("INVALID_ARGUMENT", "the request holds a lone UTF-16 surrogate "
                              "(such as \\ud800): not valid Unicode text")

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):  # type: ignore[no-untyped-def]
        """The caller gets a generic message and the request id; the log gets the rest."""
        if is_full(err):   # a write path storage did not translate: still not a 500
            log.error("write failed, storage full: %s", err)
            full = storage_full("the write")
            return error_response(full.code, full.message, full.details)
        log.exception("unhandled error, request %s", getattr(g, "request_id", "-"))
        return error_response("INTERNAL", "internal error (logged on the server)")
