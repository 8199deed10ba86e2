"""Authentication and roles: ``Authorization: Bearer <key>``.

Enforced as soon as ``REGISTRY_ADMIN_TOKEN`` is set or any API key exists. Roles: ``read``
(GET and predict), ``write`` (register, deploy, rollback, snapshots, changes), ``admin`` (keys
and deletes). Verified tokens are cached for a few seconds, so a revoked key stops working within
``CACHE_TTL_S``.
"""
from __future__ import annotations

import hashlib
import hmac
import threading
import time

from flask import Flask, g, request

from errors import PermissionDenied, Unauthenticated
from storage.key_store import KeyStore, Principal

CACHE_TTL_S = 5.0
PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz", "openapi_json", "static",
                    "dashboard.index"}
PUBLIC_PREFIXES = ("/docs", "/ui")
READ_ENDPOINTS = {"predict.predict"}  # a POST that only reads


def required_role(method: str, endpoint: str | None) -> str:
    if method == "DELETE" or (endpoint or "").startswith("keys."):
        return "admin"
    if endpoint in READ_ENDPOINTS or method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    return "write"


class Authenticator:
    def __init__(self, keys: KeyStore, admin_token: str | None) -> None:
        self.keys = keys
        self.admin_token = admin_token
        self._lock = threading.Lock()
        self._enabled: tuple[bool, float] = (False, 0.0)
        self._verified: dict[str, tuple[Principal | None, float]] = {}

    def enabled(self) -> bool:
        if self.admin_token:
            return True
        value, checked = self._enabled
        now = time.monotonic()
        if now - checked > CACHE_TTL_S / 5:
            value = self.keys.active_count() > 0
            self._enabled = (value, now)
        return value

    def invalidate(self) -> None:
        with self._lock:
            self._enabled = (False, 0.0)
            self._verified.clear()

    def principal(self, token: str) -> Principal | None:
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal("admin-token", "admin")
        cache_key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._verified.get(cache_key)
        if cached is not None and now - cached[1] < CACHE_TTL_S:
            return cached[0]
        found = self.keys.verify(token)
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[cache_key] = (found, now)
        return found

    def check(self) -> None:
        """The before-request hook: sets ``g.actor`` or raises 401/403."""
        if request.endpoint in PUBLIC_ENDPOINTS or request.path.startswith(PUBLIC_PREFIXES):
            return
        if not self.enabled():
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        principal = self.principal(token.strip())
        if principal is None:
            raise Unauthenticated("invalid or revoked API key")
        needed = required_role(request.method, request.endpoint)
        if not principal.allows(needed):
            raise PermissionDenied(f"key '{principal.name}' has role '{principal.role}'; "
                                   f"this needs '{needed}'")
        g.actor = f"key:{principal.name}"
        g.api_key = principal.name


def install(app: Flask, authenticator: Authenticator) -> None:
    app.before_request(authenticator.check)
