"""The objects one app instance works with, built once in ``create_app``."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request

from config import Settings
from registry.model_registry import ModelRegistry
from storage.database import Database

EXTENSION_KEY = "model_registry"


@dataclass
class Services:
    settings: Settings
    database: Database
    registry: ModelRegistry


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]


def actor() -> str:
    """Who is acting, for the audit trail: the API key's name once auth is on."""
    return getattr(g, "actor", None) or f"api:{request.remote_addr or 'local'}"
