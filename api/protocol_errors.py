"""Errors in the shapes foreign clients parse: OpenAI's and Google's.

The statuses are the ones of ``api/errors.py`` (DESIGN §3); only the body differs, so that the
``openai`` and ``google-genai`` SDKs raise their own typed errors with our message.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from api.errors import (CODE_BY_HTTP_STATUS, PREFIX_ERROR_HANDLERS, STATUS_BY_CODE,
                        bad_text_message, describe_validation_error)
from errors import RegistryError

log = logging.getLogger(__name__)

# The OpenAI error ``type`` of each status.
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                 403: "permission_error", 404: "not_found_error", 409: "conflict_error",
                 413: "invalid_request_error", 415: "invalid_request_error",
                 429: "rate_limit_error"}
# Google's ``status`` for each HTTP status.
_GOOGLE_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                    404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 409: "FAILED_PRECONDITION",
                    413: "INVALID_ARGUMENT",
                    415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                    502: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

Shape = Callable[[int, str, str, str | None], dict[str, Any]]


def openai_body(status: int, code: str, message: str, param: str | None) -> dict[str, Any]:
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    return {"error": {"message": message, "type": kind, "param": param,
                      "code": code.lower()}}


def google_body(status: int, code: str, message: str, param: str | None) -> dict[str, Any]:
    return {"error": {"code": status, "message": message,
                      "status": _GOOGLE_STATUSES.get(status, "UNKNOWN")}}


def error_parts(err: Exception) -> tuple[int, str, str, str | None]:
    """(status, code, message, param) of any error a protocol view may meet."""
    if isinstance(err, RegistryError):
        param = err.details.get("param")
        return (STATUS_BY_CODE.get(err.code, 500), err.code, err.message,
                param if isinstance(param, str) else None)
    if isinstance(err, ValidationError):
        first = err.errors(include_url=False)[0] if err.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        return 400, "INVALID_ARGUMENT", describe_validation_error(err), param
    if isinstance(err, HTTPException):
        status = err.code or 500
        return (status, CODE_BY_HTTP_STATUS.get(status, "INTERNAL"),
                err.description or err.name, None)
    message = bad_text_message(err)
    if message is not None:
        return 400, "INVALID_ARGUMENT", message, None
    return 500, "INTERNAL", "internal error (logged on the server)", None


def install(bp: Blueprint, shape: Shape) -> None:
    """Answer every error of ``bp``'s endpoints (including auth and body checks that run
    before them, and a 404 anywhere under its prefix) in ``shape``."""
    def handle(err: Exception) -> tuple[Response, int]:
        status, code, message, param = error_parts(err)
        if status >= 500 and not isinstance(err, (RegistryError, HTTPException)):
            log.error("unhandled error", exc_info=err)
        return jsonify(shape(status, code, message, param)), status

    for kind in (RegistryError, ValidationError, HTTPException, Exception):
        bp.register_error_handler(kind, handle)
    PREFIX_ERROR_HANDLERS[f"{bp.url_prefix}/"] = handle

