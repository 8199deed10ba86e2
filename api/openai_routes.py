"""The OpenAI-compatible API: ``/v1/chat/completions`` (plain and streamed) and ``/v1/models``.

A thin translator: an OpenAI body becomes a ``ChatRequest`` served by the one gateway
(routing, pins, fallback, in-flight limit, tracking); its answer becomes OpenAI's objects.
``model`` is ``name`` (routed, sticky by ``user`` or ``X-Routing-Key``) or ``name@ref``.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api import protocol_errors
from api.cost_header import set_cost
from api.openai_schemas import (ChatCompletion, ChatCompletionBody, OpenAIError, OpenAIModel,
                                OpenAIModelList)
from api.services import api_key_name, services
from api.spec import EXTRA_OPERATIONS, json_content, schema_ref
from deployment.gateway import ChatStream
from deployment.model_ref import parse_model_ref
from errors import NotFound
from models.base_model import ChatRequest, Message, Usage
from tracking.pricing import cost_fields

bp = Blueprint("openai", __name__, url_prefix="/v1")
protocol_errors.install(bp, protocol_errors.openai_body)

# Our finish reasons → OpenAI's ("other" has no OpenAI word: it ended, so "stop").
_FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter"}


def chat_request(body: ChatCompletionBody) -> ChatRequest:
    """OpenAI body → the provider-neutral request (``developer`` is the new ``system``)."""
    messages = tuple(Message("system" if m.role == "developer" else m.role, m.text())
                     for m in body.messages)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    params = {"temperature": body.temperature, "top_p": body.top_p, "seed": body.seed,
              "max_output_tokens": body.max_completion_tokens or body.max_tokens,
              "stop_sequences": stop or None}
    return ChatRequest(messages, {k: v for k, v in params.items() if v is not None})


def usage_json(usage: Usage | None, cost: int | None) -> dict[str, Any] | None:
    """OpenAI's usage object plus the gateway's cost of the answer (``cost_micro_usd``,
    exact, and ``cost_usd``; null when the version has no price): the SDK keeps extra fields
    (``completion.usage.cost_usd``)."""
    if usage is None:
        return None
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            **cost_fields(cost)}


@bp.post("/chat/completions")
def chat_completions():  # type: ignore[no-untyped-def]
    body = ChatCompletionBody.model_validate(request.get_json(silent=True) or {})
    ref = parse_model_ref(body.model)
    key = body.user or request.headers.get("X-Routing-Key") or None
    gateway = services().gateway
    if body.stream:
        stream = gateway.chat_stream(ref.name, chat_request(body), version=ref.ref, key=key,
                                     api_key=api_key_name())
        usage = bool(body.stream_options and body.stream_options.include_usage)
        response = Response(_events(stream, usage), mimetype="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        response.call_on_close(stream.close)  # also when the body was never started
        version = stream.version
    else:
        served = gateway.chat(ref.name, chat_request(body), version=ref.ref, key=key,
                              api_key=api_key_name())
        response = jsonify({
            "id": _completion_id(), "object": "chat.completion", "created": int(time.time()),
            "model": f"{served.model}@{served.version}",
            "choices": [{"index": 0, "logprobs": None,
                         "message": {"role": "assistant",
                                     "content": str(served.prediction.output)},
                         "finish_reason": _FINISH.get(served.prediction.finish_reason or "",
                                                      "stop")}],
            "usage": usage_json(served.prediction.usage, served.cost)})
        set_cost(response, served.cost)
        version = served.version
    response.headers["x-model-version"] = version
    return response


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _events(stream: ChatStream, include_usage: bool) -> Iterator[str]:
    """``chat.completion.chunk`` events, then the usage chunk (with the cost) when asked, then
    ``[DONE]``.
    A failure after the first piece can only be told in-band: an ``error`` event, as
    OpenAI does (the SDK raises it). Closing this generator closes the stream."""
    head = {"id": _completion_id(), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": f"{stream.model}@{stream.version}",
            "system_fingerprint": None}
    if include_usage:
        head["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        for piece in stream:
            if piece.text:
                yield chunk({"content": piece.text})
        yield chunk({}, _FINISH.get(stream.finish_reason or "", "stop"))
        if include_usage:
            usage = usage_json(stream.usage or Usage(), stream.cost)  # cost: known at the end
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as exc:  # noqa: BLE001 - told to the client in-band, then ended
        status, code, message, param = protocol_errors.error_parts(exc)
        yield f"data: {json.dumps(protocol_errors.openai_body(status, code, message, param))}\n\n"
    finally:
        stream.close()


@bp.get("/models")
def list_models():  # type: ignore[no-untyped-def]
    """The registered models that generate text, and ``name@alias`` for each alias."""
    data = []
    for model in services().gateway.text_models():
        for name in [model["name"]] + [f"{model['name']}@{a}" for a in model["aliases"]]:
            data.append(_model_json(name, model["created_at"]))
    return jsonify({"object": "list", "data": data})


@bp.get("/models/<path:model_id>")
def get_model(model_id: str):  # type: ignore[no-untyped-def]
    ref = parse_model_ref(model_id)
    gateway = services().gateway
    if ref.ref is not None:
        gateway.registry.resolve(ref.name, ref.ref)  # NotFound for a ref that names nothing
    for model in gateway.text_models():
        if model["name"] == ref.name:
            return jsonify(_model_json(model_id, model["created_at"]))
    gateway.registry.get_model(ref.name)
    raise NotFound(f"model '{ref.name}' has no version that generates text",
                   details={"param": "model"})


def _model_json(model_id: str, created_at: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model",
            "created": int(datetime.fromisoformat(created_at).timestamp()),
            "owned_by": "model-registry"}


_ERRORS = {str(status): json_content(OpenAIError, text) for status, text in (
    (400, "bad input, naming `param` (e.g. n > 1, tools, bad messages)"),
    (401, "no or invalid API key (`Authorization: Bearer`)"),
    (403, "the key's role is too low"), (404, "unknown model or ref"),
    (409, "the version cannot be served"), (413, "body over the limit"),
    (415, "body is not JSON"),
    (429, "too many calls in flight for this model"), (502, "the provider failed"),
    (503, "nothing deployed, or the provider is unavailable"),
    (504, "the provider timed out"))}
EXTRA_OPERATIONS["/v1/chat/completions"] = {"post": {
    "tags": ["openai"], "summary": "OpenAI-compatible chat completion (plain or streamed)",
    "description": "Works with the `openai` SDK unchanged (`base_url=<server>/v1`). `model` "
                   "is `name` (routed by the traffic table; sticky by `user` or "
                   "`X-Routing-Key`) or `name@ref`. With `stream: true` the answer is "
                   "Server-Sent Events of `chat.completion.chunk`, ending in `data: [DONE]`; "
                   "`stream_options.include_usage` adds the usage chunk. The version that "
                   "answered is in `model` and the `x-model-version` header. The cost of the "
                   "answer is in `usage.cost_micro_usd` (exact) and `usage.cost_usd` (null "
                   "when the version has no price), and, unless streamed, in the `X-Cost-USD` "
                   "header.",
    "operationId": "openai_chat_completions",
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": schema_ref(ChatCompletionBody)}}},
    "responses": {"200": {"description": "a `chat.completion` (or an event stream)",
                          "content": {"application/json": {"schema": schema_ref(ChatCompletion)},
                                      "text/event-stream": {"schema": {"type": "string"}}}},
                  **_ERRORS}}}
EXTRA_OPERATIONS["/v1/models"] = {"get": {
    "tags": ["openai"], "summary": "The models that generate text (OpenAI `list` of `model`)",
    "operationId": "openai_list_models",
    "responses": {"200": json_content(OpenAIModelList, "models and name@alias ids"),
                  "401": _ERRORS["401"], "403": _ERRORS["403"]}}}
EXTRA_OPERATIONS["/v1/models/{model_id}"] = {"get": {
    "tags": ["openai"], "summary": "One model (`name` or `name@ref`)",
    "operationId": "openai_get_model",
    "parameters": [{"name": "model_id", "in": "path", "required": True,
                    "schema": {"type": "string"}}],
    "responses": {"200": json_content(OpenAIModel, "the model"), "401": _ERRORS["401"],
                  "403": _ERRORS["403"], "400": _ERRORS["400"], "404": _ERRORS["404"]}}}
