"""Where webhooks may be sent: https anywhere public; plain http only to hosts a setting names;
private, loopback, link-local and other non-public addresses only when a setting allows them.

Checked when a subscription is saved (the URL's form, literal addresses) and again on every
attempt, after DNS resolution: the address each connection actually reached is checked as soon
as it is connected, before anything is sent (so a name that pointed outside cannot be made to
point inside later, nor between a check and the request). Redirects are never followed, so a
receiver cannot bounce a delivery to an address that was not checked.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

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

    def check_peer(self, host: str, peer: str) -> None:
        """The address a connection actually reached (called right after connect, before TLS
        or any byte is sent): no second DNS lookup a rebinding name could answer differently."""
        self._check_address(host, ipaddress.ip_address(peer.split("%", 1)[0]))

    def _check_address(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address
                       ) -> None:
        if self.allow_private or address.is_global:
            return
        raise RefusedDestination(
            f"'{host}' resolves to {address}, a private, loopback, link-local or reserved "
            "address; set WEBHOOK_ALLOW_PRIVATE=true to allow such receivers")


def guarded_adapter(destinations: Destinations, pool_size: int) -> HTTPAdapter:
    """A requests adapter whose connections check their peer address with ``destinations``
    as soon as the TCP connection is up (the TLS handshake still verifies the host name)."""

    def checked(base: type[HTTPConnection]) -> type[HTTPConnection]:
        class Checked(base):  # type: ignore[valid-type, misc]
            def _new_conn(self) -> socket.socket:
                sock = super()._new_conn()
                try:
                    destinations.check_peer(self.host, sock.getpeername()[0])
                except RefusedDestination:
                    sock.close()
                    raise
                return sock
        return Checked

    class Pools(PoolManager):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.pool_classes_by_scheme = {
                "http": type("CheckedHTTPPool", (HTTPConnectionPool,),
                             {"ConnectionCls": checked(HTTPConnection)}),
                "https": type("CheckedHTTPSPool", (HTTPSConnectionPool,),
                              {"ConnectionCls": checked(HTTPSConnection)}),
            }

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                             **pool_kwargs: Any) -> None:
            self._pool_connections, self._pool_maxsize, self._pool_block = (
                connections, maxsize, block)
            self.poolmanager = Pools(num_pools=connections, maxsize=maxsize, block=block,
                                     **pool_kwargs)

    return Adapter(pool_maxsize=pool_size)
