"""Checks of free text that every layer stores (descriptions, reasons)."""
from __future__ import annotations

from typing import Any

from errors import InvalidArgument

MAX_TEXT_LENGTH = 10_000


def check_text(value: Any, what: str = "description") -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise InvalidArgument(f"{what} must be a string of at most {MAX_TEXT_LENGTH} characters")
    if "\x00" in value:  # PostgreSQL cannot store it; refuse it on every database alike
        raise InvalidArgument(f"{what} must not contain NUL characters")
    return value
