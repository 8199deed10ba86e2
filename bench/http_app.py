"""The benchmark's WSGI app: the real app plus one bare Flask endpoint that calls the same
loaded ONNX session directly (no routing, no tracking, no validation), in the same server."""
from __future__ import annotations

from typing import Any

import numpy as np
from flask import Flask, request

from api.app import create_app


def with_bare_endpoint(app: Flask) -> Flask:
    """``POST /bare/<name>/<version>``: the same session, called as a bare Flask app would."""
    services = app.extensions["model_registry"]

    @app.post("/bare/<name>/<version>")
    def bare_predict(name: str, version: str) -> dict[str, Any]:
        provider = services.loader.get(name, version)
        x = np.asarray(request.get_json()["input"], dtype=np.float32)
        (y,) = provider._session.run(None, {"x": x})
        return {"output": y.tolist()}

    return app


def build() -> Flask:
    """The app gunicorn serves (``bench.http_app:build()``): settings from the environment."""
    return with_bare_endpoint(create_app())
