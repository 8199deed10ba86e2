"""Where webhooks may be sent: https anywhere public; plain http only to hosts a setting names;
private, loopback, link-local and other non-public addresses only when a setting allows them.

Checked when a subscription is saved (the URL's form, literal addresses) and again before every
attempt, after DNS resolution, on every address the name resolves to (a name that pointed
outside may point inside later). Redirects are never followed, so a receiver cannot bounce a
delivery to an address that was not checked.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from errors import InvalidArgument

MAX_URL_LENGTH = 2048


class RefusedDestination(InvalidArgument):
    """The URL or one of its addresses is not allowed by the webhook settings."""


@dataclass(frozen=True)
class Destinations:
    allowed_http_hosts: tuple[str, ...] = ()
    allow_private: bool = False

    def check_url(self, url: str) -> tuple[str, int]:
        """The URL's form and scheme; returns (host, port)."""
        if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
            raise RefusedDestination(f"url must be 1-{MAX_URL_LENGTH} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise RefusedDestination(f"url is not a valid URL: {exc}") from None
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise RefusedDestination("url must be an absolute http(s) URL with a host")
        if parts.username or parts.password:
            raise RefusedDestination("url must not carry credentials; use the secret")
        if parts.scheme == "http" and host not in self.allowed_http_hosts:
            raise RefusedDestination(
                f"url must use https (plain http only to hosts in WEBHOOK_ALLOWED_HTTP_HOSTS; "
                f"'{host}' is not one)")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            self._check_address(host, literal)
        return host, port or (443 if parts.scheme == "https" else 80)

    def check_resolved(self, url: str) -> None:
        """Resolve the URL's host now and refuse it if any address is not allowed."""
        host, port = self.check_url(url)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectionError(f"cannot resolve '{host}': {exc}") from None
        for info in infos:
            self._check_address(host, ipaddress.ip_address(info[4][0].split("%", 1)[0]))

    def _check_address(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address
                       ) -> None:
        if self.allow_private or address.is_global:
            return
        raise RefusedDestination(
            f"'{host}' resolves to {address}, a private, loopback, link-local or reserved "
            "address; set WEBHOOK_ALLOW_PRIVATE=true to allow such receivers")
