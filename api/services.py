"""What a view asks for: the app's services (built by the composition root, ``wiring.py``),
its authenticator, and who is acting."""
from __future__ import annotations

from flask import current_app, g, request

from api.auth import Authenticator
from wiring import Services

EXTENSION_KEY = "model_registry"
AUTH_KEY = "model_registry.auth"


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]


def authenticator() -> Authenticator:
    return current_app.extensions[AUTH_KEY]


def api_key_name() -> str | None:
    """The calling API key's name (None while auth is off): what spend is counted by."""
    return g.get("api_key")   # not getattr: a missing name raises (and catches) twice


def actor() -> str:
    """Who is acting, for the audit trail: the API key's name once auth is on."""
    return g.get("actor") or f"api:{request.remote_addr or 'local'}"
