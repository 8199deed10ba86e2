"""The OpenAPI spec: the same pydantic models validate requests and document the API.

spectree builds the document from ``spec.validate(...)``; the per-request work is ours and
lean (issue 14): the query and the JSON body are each validated by one pydantic call, and a
failure is the usual 400 INVALID_ARGUMENT. Answers are not validated again per request (that
walk over every answer, and spectree's re-wrapping of the response, cost a fifth to a third of
a registry read's CPU): views build them from the same schemas, and the tests check every
answer against the document (schemathesis, ``tests/test_fuzz_api.py``).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import request
from pydantic import BaseModel
from spectree import SpecTree
from spectree.utils import get_multidict_items, get_request_model_hints

from api.docs_pages import PAGE_TEMPLATES


# Request parts spectree could validate that no view of this API uses: refused when a view is
# declared, so that nothing is documented as checked without being checked.
_UNSUPPORTED_PARTS = ("form", "headers", "cookies")


class LeanSpecTree(SpecTree):
    """spectree's documentation, with a lean per-request wrapper of our own (see the module
    docstring). ``validate(query=, json=, resp=, tags=, ...)`` is called as spectree's is; as
    with spectree's ``annotations=True``, a view's ``query``/``json`` parameter annotations name
    the models, and the view receives the validated instances under those names.

    A model's JSON schema is generated when the document is first built, not when its view is
    declared: pydantic's schema generation for every route's models was about a fifth of the
    time to import the API, paid by every process that starts a server and never serves
    ``/openapi.json``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._undocumented: list[tuple[Any, Any]] = []

    def _add_model(self, model: Any, mode: Any = "validation") -> str:
        self._undocumented.append((model, mode))
        return self.naming_strategy(model)

    def _generate_spec(self) -> dict[str, Any]:
        undocumented, self._undocumented = self._undocumented, []
        for model, mode in undocumented:
            super()._add_model(model, mode)
        return super()._generate_spec()

    def validate(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if args or any(kwargs.get(part) for part in _UNSUPPORTED_PARTS):
            raise TypeError("LeanSpecTree.validate takes keyword arguments, and validates only "
                            "query and json")
        document = super().validate(**kwargs)

        def apply(func: Callable[..., Any]) -> Callable[..., Any]:
            wrapper = document(func)   # registers the operation; never called per request
            hints = get_request_model_hints(func)
            query_model = hints.get("query", kwargs.get("query"))
            json_model = hints.get("json", kwargs.get("json"))
            pass_query, pass_json = "query" in hints, "json" in hints

            @functools.wraps(func)
            def view(*view_args: Any, **view_kwargs: Any) -> Any:
                if query_model is not None:
                    query = query_model.model_validate(
                        get_multidict_items(request.args, query_model))
                    if pass_query:
                        view_kwargs["query"] = query
                if json_model is not None and request.method not in ("GET", "DELETE"):
                    # A body that is not JSON never gets here (api/app.py: 415 or 400).
                    body = json_model.model_validate(request.get_json(silent=True) or {})
                    if pass_json:
                        view_kwargs["json"] = body
                return func(*view_args, **view_kwargs)

            view.__wrapped__ = wrapper  # type: ignore[attr-defined]  # spectree's metadata
            return view
        return apply


spec = LeanSpecTree(
    "flask",
    title="Model Registry",
    version="1.0.0",
    path="docs",
    mode="strict",
    validation_error_status=400,
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
