"""The OpenAPI spec: the same pydantic models validate requests and document the API."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from spectree import SpecTree

from api.docs_pages import PAGE_TEMPLATES
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
    page_templates=PAGE_TEMPLATES,   # pinned CDN assets with SRI; see api/docs_pages.py
)

# Operations spectree cannot wrap (it buffers every response it validates, and a streamed
# artifact must not be buffered): described by hand, merged into the document.
EXTRA_OPERATIONS: dict[str, dict[str, Any]] = {}
# Schemas those operations refer to (``schema_ref``), merged into ``components.schemas``.
EXTRA_SCHEMAS: dict[str, Any] = {}


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    """Put a pydantic model (and the models it uses) into the document; return its $ref."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    EXTRA_SCHEMAS.update(schema.pop("$defs", {}))
    EXTRA_SCHEMAS[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def json_content(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": schema_ref(model)}}}


_ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                   "details": {"type": "object"}}}}}
# Answers any operation may give, whatever its own schemas say: auth, and body limits.
_COMMON = {"401": "no or invalid API key", "403": "the key's role is too low"}
_WITH_BODY = {"413": "body over the limit", "415": "body is not JSON"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ERROR_SCHEMA}}}


def openapi_document() -> dict[str, Any]:
    """spectree's document, plus the hand-described operations and the common error answers."""
    doc = dict(spec.spec)
    paths = {path: {m: dict(op) for m, op in ops.items()}
             for path, ops in doc.get("paths", {}).items()}
    for path, ops in EXTRA_OPERATIONS.items():
        paths.setdefault(path, {}).update(ops)
    for path, ops in paths.items():
        for method, op in ops.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = dict(op["responses"])
            common = {**_COMMON, **(_WITH_BODY if method in ("post", "put", "patch") else {})}
            for code, description in common.items():
                responses.setdefault(code, _error(description))
            op["responses"] = responses
            op.setdefault("security", [{"bearer": []}, {}])
    doc["paths"] = paths
    components = dict(doc.get("components", {}))
    components["schemas"] = {**EXTRA_SCHEMAS, **components.get("schemas", {})}
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    doc["components"] = components
    return doc
