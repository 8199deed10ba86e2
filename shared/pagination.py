"""Opaque keyset page tokens: the client gets a token, never an offset."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from errors import InvalidArgument

MAX_PAGE_SIZE = 1000


def encode_token(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None) -> Any:
    if token in (None, ""):
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token is not a token this server issued") from None


def check_limit(limit: int, default: int = 100) -> int:
    if limit is None:
        return default
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}")
    return limit
