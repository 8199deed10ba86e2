"""The one exception hierarchy of the service.

Every layer raises these; only ``api/errors.py`` knows which HTTP status each code maps to.
"""
from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """Base of every domain error. ``code`` is the stable, documented error code."""

    code = "INTERNAL"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidArgument(RegistryError, ValueError):
    code = "INVALID_ARGUMENT"


class NotFound(RegistryError, LookupError):
    code = "NOT_FOUND"


class AlreadyExists(RegistryError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(RegistryError):
    code = "FAILED_PRECONDITION"


class Unauthenticated(RegistryError):
    code = "UNAUTHENTICATED"


class PermissionDenied(RegistryError):
    code = "PERMISSION_DENIED"


class TooLarge(RegistryError):
    code = "TOO_LARGE"


class UnsupportedMediaType(RegistryError):
    code = "UNSUPPORTED_MEDIA_TYPE"


class RateLimited(RegistryError):
    """Too many requests in flight for a model (the provider concurrency limit)."""

    code = "RESOURCE_EXHAUSTED"


class ProviderError(RegistryError):
    """The model backend answered with an error (Gemini 4xx/5xx, ONNX runtime failure)."""

    code = "PROVIDER_ERROR"


class Unavailable(RegistryError):
    """Nothing can serve: nothing deployed, a key missing, the backend overloaded (429)."""

    code = "UNAVAILABLE"


class ProviderTimeout(RegistryError):
    code = "PROVIDER_TIMEOUT"


class DataCorrupted(RegistryError):
    """Stored bytes no longer match their digest: refused, never served."""

    code = "DATA_CORRUPTED"


class BudgetExceeded(RateLimited):
    """A hard budget of the calling API key or of the model is spent (429); ``details`` holds
    the budget, the spend and when the period resets."""


class ConfigurationError(RegistryError, ValueError):
    """A setting cannot be used. ``variable`` names it; the message says what it accepts."""

    code = "CONFIGURATION_ERROR"

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(message, details={"variable": variable})
        self.variable = variable


class StorageFull(RegistryError):
    """A write failed because the disk (or the database's disk) is full: nothing changed."""

    code = "INSUFFICIENT_STORAGE"
