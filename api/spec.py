"""The OpenAPI spec: the same pydantic models validate requests and document the API."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from spectree import SpecTree

from errors import InvalidArgument


def _raise_domain_error(_req: Any, _resp: Any, err: ValidationError | None, _instance: Any,
                        _adapter: Any = None) -> None:
    """spectree's own 422 body becomes our 400 INVALID_ARGUMENT."""
    if err is not None:
        raise err if isinstance(err, ValidationError) else InvalidArgument(str(err))


def _after(*_args: Any) -> None:
    """Responses are built from the schemas already; nothing to check per request."""


spec = SpecTree(
    "flask",
    title="Model Registry",
    version="1.0.0",
    path="docs",
    mode="strict",
    validation_error_status=400,
    before=_raise_domain_error,
    after=_after,
    annotations=True,
)
