"""The application factory; ``python api/app.py`` serves on HOST:PORT.

Production: ``gunicorn -w 4 -b 0.0.0.0:5000 'api.app:create_app()'``.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python api/app.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging
from typing import Any

import click
from flask import Flask, jsonify, request

from api import health_routes, models_routes
from api.errors import register_error_handlers
from api.services import EXTENSION_KEY, Services
from api.spec import spec
from config import Settings
from errors import InvalidArgument, UnsupportedMediaType
from registry.model_registry import ModelRegistry
from storage.database import Database

BLUEPRINTS = (models_routes.bp, health_routes.bp)
# Endpoints whose body is raw bytes rather than JSON.
RAW_BODY_ENDPOINTS: set[str] = set()


def _check_json_body() -> None:
    """Reject a body that is not JSON (415) or not valid JSON (400) before any view runs."""
    if request.method not in ("POST", "PUT", "PATCH") or request.endpoint in RAW_BODY_ENDPOINTS:
        return
    if not request.get_data(cache=True):
        return
    if not request.is_json:
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {request.mimetype or 'none'!r}")
    try:
        request.get_json()
    except Exception:  # werkzeug's BadRequest, or RecursionError for absurdly deep nesting
        raise InvalidArgument("request body is not valid JSON") from None


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build an app. ``test_config`` may override settings (lower-case names, e.g.
    ``{"database_url": ..., "data_dir": ...}``) and Flask config (upper-case names)."""
    test_config = test_config or {}
    settings = Settings.from_env({k: v for k, v in test_config.items() if k.islower()})
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.config.update({k: v for k, v in test_config.items() if k.isupper()})

    database = Database(settings.database_url)
    app.extensions[EXTENSION_KEY] = Services(
        settings=settings, database=database, registry=ModelRegistry(database))

    register_error_handlers(app)
    app.before_request(_check_json_body)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    spec.register(app)

    @app.get("/openapi.json")
    def openapi_json():  # type: ignore[no-untyped-def]
        """The OpenAPI 3.1 document (also at /docs/openapi.json, browsable at /docs/swagger/)."""
        return jsonify(spec.spec)

    _register_cli(app)
    return app


def _register_cli(app: Flask) -> None:
    @app.cli.command("db-upgrade")
    def db_upgrade() -> None:
        """Run the database migrations to the newest revision."""
        app.extensions[EXTENSION_KEY].database.migrate()
        click.echo("database is at the newest revision")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app()
    settings: Settings = app.extensions[EXTENSION_KEY].settings
    app.run(host=settings.host, port=settings.port, threaded=True)


if __name__ == "__main__":
    main()
