"""The benchmark's WSGI app: the real app plus one bare Flask endpoint that calls the same
loaded ONNX session directly (no routing, no tracking, no validation), in the same server."""
from __future__ import annotations

import numpy as np
from flask import request

from api.app import create_app

app = create_app()
_services = app.extensions["model_registry"]


@app.post("/bare/<name>/<version>")
def bare_predict(name: str, version: str):
    provider = _services.loader.get(name, version)
    x = np.asarray(request.get_json()["input"], dtype=np.float32)
    (y,) = provider._session.run(None, {"x": x})
    return {"output": y.tolist()}
