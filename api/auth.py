"""Authentication and roles: ``Authorization: Bearer <key>``.

Enforced as soon as ``REGISTRY_ADMIN_TOKEN`` is set or an API key was ever created: the first
key sets a persisted "keys required" switch that nothing in the service clears, and the last
active admin key cannot be revoked (issue 21). While authentication is off, only loopback
peers naming a loopback ``Host`` are served, whatever address the server is bound to: that
keeps other machines out and defeats DNS rebinding (a web page whose name resolves to
127.0.0.1 still sends its own name in ``Host``). Roles: ``read``
(GET and predict), ``write`` (register, deploy, rollback, snapshots, changes), ``admin`` (keys,
webhooks and deletes). Verified tokens are cached for a few seconds, so a revoked key stops
working within ``CACHE_TTL_S``.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import threading
import time
from urllib.parse import urlsplit

from flask import Flask, g, request

from errors import PermissionDenied, Unauthenticated
from storage.key_store import KeyStore
from storage.records import Principal

CACHE_TTL_S = 5.0
PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz", "openapi_json", "static",
                    "dashboard.index", "oip.health"}
PUBLIC_PREFIXES = ("/docs", "/ui")
# POSTs that only read: predictions in every protocol, and MLflow's get-latest-versions.
READ_ENDPOINTS = {"predict.predict", "openai.chat_completions", "gemini.generate", "oip.infer",
                  "mlflow.get_latest_versions"}


def is_loopback_name(host: str | None) -> bool:
    """``localhost``, ``*.localhost`` (RFC 6761) or a loopback address, with or without port."""
    if not host:
        return False
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=1024)
def _local_pair(peer: str | None, host: str | None) -> bool:
    """Whether a peer address and a ``Host`` are both loopback. Remembered per pair (bounded):
    parsing them cost as much as the rest of the check, on every request."""
    return is_loopback_name(peer) and is_loopback_name(host)


def required_role(method: str, endpoint: str | None) -> str:
    if method == "DELETE" or (endpoint or "").startswith(("keys.", "webhooks.", "bundle.")):
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
        """On with the admin token or once a key was ever created; once seen on, it is
        never re-read (the persisted switch is never cleared)."""
        if self.admin_token:
            return True
        value, checked = self._enabled
        now = time.monotonic()
        if not value and now - checked > CACHE_TTL_S / 5:
            value = self.keys.keys_required()
            self._enabled = (value, now)
        return value

    def invalidate(self) -> None:
        with self._lock:
            if not self._enabled[0]:
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
        if not self.enabled():
            self._local_only()
            return
        if request.endpoint in PUBLIC_ENDPOINTS or request.path.startswith(PUBLIC_PREFIXES):
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # google-genai sends its key in x-goog-api-key (the Gemini-compatible API).
            scheme, token = "bearer", request.headers.get("x-goog-api-key", "")
        if not token.strip():
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>' "
                                  "(or 'x-goog-api-key: <key>')")
        principal = self.principal(token.strip())
        if principal is None:
            raise Unauthenticated("invalid or revoked API key")
        needed = required_role(request.method, request.endpoint)
        if not principal.allows(needed):
            raise PermissionDenied(f"key '{principal.name}' has role '{principal.role}'; "
                                   f"this needs '{needed}'")
        g.actor = f"key:{principal.name}"
        g.api_key = principal.name


    @staticmethod
    def _local_only() -> None:
        """Authentication off: serve this machine only (peer and ``Host`` both loopback)."""
        if not _local_pair(request.remote_addr, request.host):
            raise PermissionDenied(
                "authentication is off (no API key was ever created and REGISTRY_ADMIN_TOKEN "
                "is not set): only loopback clients addressing a loopback host are served",
                details={"reason": "auth_off_local_only"})


def install(app: Flask, authenticator: Authenticator) -> None:
    app.before_request(authenticator.check)
