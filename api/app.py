"""The application factory; ``python api/app.py`` serves on HOST:PORT.

Production: ``gunicorn -c gunicorn.conf.py 'api.app:create_app()'`` (see the README).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python api/app.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging
import math
import random
import re
from typing import Any

import click
from flask import Flask, Response, g, jsonify, request

from api import (artifacts_routes, auth, background, bundle_routes, cost_routes,
                 dashboard_routes, deployments_routes, gemini_routes, health_routes, keys_routes,
                 metrics_routes, mlflow_routes, models_routes, oip_routes, openai_routes,
                 predict_routes, rollback_routes, webhooks_routes)
from api.docs_pages import PAGE_HEADERS
from api.errors import error_response, register_error_handlers
from api.services import AUTH_KEY, EXTENSION_KEY
from api.spec import openapi_document, spec
import observability
from config import Settings
from errors import ConfigurationError, InvalidArgument, UnsupportedMediaType
from wiring import build_services

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
BLUEPRINTS = (models_routes.bp, artifacts_routes.bp, predict_routes.bp, metrics_routes.bp,
              health_routes.bp, deployments_routes.bp, rollback_routes.bp, keys_routes.bp,
              dashboard_routes.bp, cost_routes.bp, webhooks_routes.bp, openai_routes.bp,
              gemini_routes.bp, oip_routes.bp, mlflow_routes.bp, mlflow_routes.artifacts_bp,
              bundle_routes.bp)
# Endpoints whose body is raw bytes rather than JSON.
# (OIP inference: JSON or the binary tensor extension, and tritonclient sends no Content-Type;
# a bundle import is the zip itself.)
RAW_BODY_ENDPOINTS = {"artifacts.put_artifact", "oip.infer", "bundle.import_"}


# Deep enough for any tensor, config or metadata; shallow enough that nothing recursive
# downstream (response validation, JSON columns) can exhaust the stack: 400, never 500.
MAX_JSON_DEPTH = 64
# Cheap hint that a body may hold a number JSON cannot carry (NaN, Infinity, beyond the float
# range); only then is the parsed body walked to decide.
_NON_FINITE_HINT = re.compile(rb"NaN|Infinity|[eE]\+?0*[1-9][0-9]{2}|[0-9]{300}")


def _check_json_body() -> None:
    """Reject a body that is not JSON (415) or not valid JSON (400) before any view runs:
    also NaN/Infinity (not JSON, though Python's parser takes them), numbers beyond the float
    range and nesting deeper than MAX_JSON_DEPTH."""
    if request.routing_exception is not None:   # no such URL or method: the 404/405 wins
        return
    if request.method not in ("POST", "PUT", "PATCH") or request.endpoint in RAW_BODY_ENDPOINTS:
        return
    raw = request.get_data(cache=True)
    if not raw:
        return
    if not request.is_json:
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {request.mimetype or 'none'!r}")
    try:
        body = request.get_json()
    except Exception:  # werkzeug's BadRequest, or RecursionError for absurdly deep nesting
        raise InvalidArgument("request body is not valid JSON") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        level, depth = [body], 0
        while level:
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidArgument(f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
            level = [child for item in level
                     for child in (item.values() if isinstance(item, dict) else item)
                     if isinstance(child, (dict, list))]
    if _NON_FINITE_HINT.search(raw):
        stack = [body]
        while stack:
            item = stack.pop()
            for child in (item.values() if isinstance(item, dict) else
                          item if isinstance(item, list) else (item,)):
                if isinstance(child, float) and not math.isfinite(child):
                    raise InvalidArgument("request body holds a number JSON cannot carry: NaN, "
                                          "Infinity or beyond the float range (about 1.8e308)")
                if isinstance(child, (dict, list)):
                    stack.append(child)


DOC_PAGE_PREFIX = "openapi_docs_"          # spectree's endpoints of the /docs/<ui>/ pages
SPEC_ENDPOINTS = {"openapi_docs", "openapi_json"}


_CALLER_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _assign_request_id() -> None:
    """Every request gets an id, echoed in ``X-Request-Id`` and written with the details of
    any failure the caller only sees generically (issue 21). A caller's (or proxy's) own
    ``X-Request-Id`` is kept when it is a plain token, so one id follows the request through
    every hop; anything else gets a fresh one (issue 20). Logs of the request carry it, and a
    span covers the request when tracing is on."""
    given = request.headers.get("X-Request-Id", "")
    # Unique, not secret (it names log lines): no system call per request, as token_hex makes.
    g.request_id = given if _CALLER_REQUEST_ID.fullmatch(given) else \
        f"{random.getrandbits(64):016x}"
    observability.bind_request(g.request_id)
    if not observability.tracing_enabled():   # nothing to build per request
        return
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    g.otel_span = observability.start_request_span(
        f"{request.method} {rule}", request.headers, **{
            "http.request.method": request.method, "http.route": rule,
            "url.path": request.path, "registry.request_id": g.request_id})


def _end_request_span(error: BaseException | None) -> None:
    observability.end_request_span(g.pop("otel_span", None), g.pop("otel_status", None), error)


def _note_status(response: Response) -> Response:
    g.otel_status = response.status_code
    return response


def _secure_headers(response: Response) -> Response:
    """Issue 21: no page of this origin may be framed; the docs pages run sandboxed (another
    origin) under a strict policy; the public OpenAPI document is readable from there."""
    response.headers["X-Request-Id"] = getattr(g, "request_id", "")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    endpoint = request.endpoint or ""
    if endpoint.startswith(DOC_PAGE_PREFIX):
        response.headers.update(PAGE_HEADERS)
    elif endpoint in SPEC_ENDPOINTS:
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _cap_response(limit: int):  # type: ignore[no-untyped-def]
    """An answer larger than ``limit`` bytes (MAX_RESPONSE_BYTES) is refused: one request
    cannot make the server ship hundreds of megabytes (streamed downloads are exempt)."""
    def cap(response: Response) -> Response:
        if response.is_streamed or response.direct_passthrough or \
                response.mimetype != "application/json":
            return response
        size = response.calculate_content_length() or 0
        if size <= limit:
            return response
        answer, status = error_response(
            "TOO_LARGE", f"the answer would be {size} bytes, over the {limit}-byte limit "
            "(MAX_RESPONSE_BYTES): ask for less (a version, a smaller window, a larger step, "
            "a lower limit)", {"response_bytes": size, "limit": limit}, status=400)
        answer.status_code = status
        return answer
    return cap


class RegistryFlask(Flask):
    """Flask, with ``ensure_sync`` remembered per function: Flask asks it of every hook and
    view on every request (``inspect.iscoroutinefunction`` each time), about a tenth of the
    framework's cost per request (issue 14). The answer for a function never changes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Any, Any] = {}

    def ensure_sync(self, func: Any) -> Any:
        try:
            return self._sync[func]
        except KeyError:
            sync = super().ensure_sync(func)
            if len(self._sync) < 10_000:   # registered functions only, in practice
                self._sync[func] = sync
            return sync
        except TypeError:   # an unhashable callable: ask each time
            return super().ensure_sync(func)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build an app. ``test_config`` may override settings (lower-case names, e.g.
    ``{"database_url": ..., "data_dir": ...}``) and Flask config (upper-case names)."""
    test_config = test_config or {}
    settings = Settings.from_env({k: v for k, v in test_config.items() if k.islower()})
    app = RegistryFlask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.config.update({k: v for k, v in test_config.items() if k.isupper()})

    observability.configure_logging(settings)    # issue 20: LOG_FORMAT, request fields
    observability.configure_tracing(settings)    # issue 20: OTEL_EXPORTER_OTLP_ENDPOINT
    svc = app.extensions[EXTENSION_KEY] = build_services(settings)
    authenticator = app.extensions[AUTH_KEY] = auth.Authenticator(svc.keys, settings.admin_token)

    app.before_request(_assign_request_id)
    app.after_request(_note_status)
    app.teardown_request(_end_request_span)
    register_error_handlers(app)
    auth.install(app, authenticator)
    app.before_request(_check_json_body)
    app.after_request(_cap_response(settings.max_response_bytes))
    app.after_request(_secure_headers)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    spec.register(app)

    @app.get("/openapi.json")
    def openapi_json():  # type: ignore[no-untyped-def]
        """The OpenAPI 3.1 document (also at /docs/openapi.json, browsable at /docs/swagger/)."""
        return jsonify(openapi_document())

    _register_cli(app)
    # The background ticker (rollouts, automatic rollback, alerts, retention): on in a server,
    # off under TESTING (tests tick explicitly) or with "TICKER": False.
    if app.config.get("TICKER", not app.testing):
        background.start(app)
        app.extensions[EXTENSION_KEY].shadows.mirror.start()   # issue 19: shadow workers
    return app


def _register_cli(app: Flask) -> None:
    @app.cli.command("db-upgrade")
    def db_upgrade() -> None:
        """Run the database migrations to the newest revision."""
        app.extensions[EXTENSION_KEY].database.migrate()
        click.echo("database is at the newest revision")

    keys = click.Group("keys", help="Create, list and revoke API keys.")
    app.cli.add_command(keys)

    @keys.command("create")
    @click.argument("name")
    @click.option("--role", type=click.Choice(["read", "write", "admin"]), default="read")
    def create_key(name: str, role: str) -> None:
        """Create a key; its token is printed once."""
        key, token = app.extensions[EXTENSION_KEY].keys.create(name, role, actor="cli")
        click.echo(f"created key {key.id} '{name}' ({role}); token, shown once:\n{token}")

    @keys.command("list")
    def list_keys() -> None:
        """List keys (never their tokens)."""
        for key in app.extensions[EXTENSION_KEY].keys.list():
            shown = key.as_dict()
            state = "active" if key.active else f"revoked {shown['revoked_at']}"
            click.echo(f"{key.id:>4}  {key.name:<24} {key.role:<6} {state}")

    @keys.command("revoke")
    @click.argument("key_id", type=int)
    def revoke_key(key_id: int) -> None:
        """Revoke a key by id."""
        app.extensions[EXTENSION_KEY].keys.revoke(key_id, actor="cli")
        click.echo(f"revoked key {key_id}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        app = create_app()
    except ConfigurationError as exc:   # the entry point stops with the message, no traceback
        raise SystemExit(f"configuration error: {exc.message}") from None
    svc, authenticator = app.extensions[EXTENSION_KEY], app.extensions[AUTH_KEY]
    host = svc.settings.host
    if not authenticator.enabled() and host not in LOOPBACK_HOSTS:
        logging.getLogger("api").warning(
            "authentication is off (no API key exists and REGISTRY_ADMIN_TOKEN is not set): "
            "listening on 127.0.0.1 only instead of %s. Set REGISTRY_ADMIN_TOKEN or create a key "
            "(flask --app api.app keys create NAME --role admin) to serve other hosts.", host)
        host = "127.0.0.1"
    elif not authenticator.enabled():
        logging.getLogger("api").warning("authentication is off: local use only (%s)", host)
    app.run(host=host, port=svc.settings.port, threaded=True)


if __name__ == "__main__":
    main()
