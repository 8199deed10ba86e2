"""The Gemini-compatible API: ``/gemini/{v1,v1beta}/models/{model}:generateContent`` and
``:streamGenerateContent`` (``?alt=sse``), so that
``genai.Client(http_options={"base_url": "<server>/gemini"})`` works unchanged.

A thin translator over the one gateway, like the OpenAI API: ``{model}`` is ``name`` (routed;
sticky by ``X-Routing-Key``) or ``name@ref``; the key comes in ``x-goog-api-key``.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal, Optional

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from api import protocol_errors
from api.cost_header import set_cost
from api.services import api_key_name, services
from api.spec import EXTRA_OPERATIONS, json_content, schema_ref
from deployment.gateway import ChatStream
from deployment.model_ref import parse_model_ref
from errors import InvalidArgument
from models.base_model import ChatRequest, Delta, Message, Usage
from money import micro_to_usd

bp = Blueprint("gemini", __name__, url_prefix="/gemini")
protocol_errors.install(bp, protocol_errors.google_body)

_ACTIONS = ("generateContent", "streamGenerateContent")
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}


class _Camel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Part(_Camel):
    text: str


class Content(_Camel):
    role: Optional[Literal["user", "model"]] = None
    parts: list[Part] = Field(min_length=1)


class GenerationConfig(_Camel):
    temperature: Optional[float] = None
    topP: Optional[float] = None
    topK: Optional[int] = None
    maxOutputTokens: Optional[int] = None
    stopSequences: Optional[list[str]] = None
    seed: Optional[int] = None
    candidateCount: Optional[Literal[1]] = None


class GenerateContentBody(_Camel):
    contents: list[Content] = Field(min_length=1)
    systemInstruction: Optional[Content] = None
    generationConfig: Optional[GenerationConfig] = None


class GenerateContentResponse(BaseModel):
    candidates: list[dict[str, Any]]
    usageMetadata: Optional[dict[str, Optional[float]]] = Field(
        description="Gemini's token counts, plus the answer's cost: `costMicroUsd` (exact "
                    "integer micro-USD) and `costUsd`, null when the version has no price")
    modelVersion: str = Field(description="`name@version` of the version that answered")


class GoogleErrorDetail(BaseModel):
    code: int
    message: str
    status: str


class GoogleError(BaseModel):
    error: GoogleErrorDetail


_PARAMS = {"temperature": "temperature", "topP": "top_p", "topK": "top_k",
           "maxOutputTokens": "max_output_tokens", "stopSequences": "stop_sequences",
           "seed": "seed"}


def chat_request(body: GenerateContentBody) -> ChatRequest:
    messages = []
    if body.systemInstruction is not None:
        messages.append(Message("system", "".join(p.text for p in body.systemInstruction.parts)))
    for content in body.contents:
        messages.append(Message("assistant" if content.role == "model" else "user",
                                "".join(p.text for p in content.parts)))
    config = body.generationConfig.model_dump(exclude_none=True) if body.generationConfig else {}
    config.pop("candidateCount", None)
    return ChatRequest(tuple(messages), {_PARAMS[k]: v for k, v in config.items()})


def usage_json(usage: Usage | None, cost: int | None) -> dict[str, Any] | None:
    """Gemini's ``usageMetadata`` plus the gateway's cost (``costMicroUsd``, ``costUsd``).
    google-genai drops fields it does not know, so its users read ``X-Cost-USD`` from
    ``response.sdk_http_response.headers`` instead; raw HTTP clients see both."""
    if usage is None:
        return None
    return {"promptTokenCount": usage.input_tokens,
            "candidatesTokenCount": usage.output_tokens - usage.reasoning_tokens,
            "thoughtsTokenCount": usage.reasoning_tokens, "totalTokenCount": usage.total_tokens,
            "costMicroUsd": cost, "costUsd": micro_to_usd(cost)}


def _response(text: str, finish: str | None, usage: Usage | None, model_version: str,
              cost: int | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]},
                                 "index": 0}
    if finish is not None:
        candidate["finishReason"] = _FINISH.get(finish, "OTHER")
    body: dict[str, Any] = {"candidates": [candidate], "modelVersion": model_version}
    if usage is not None:
        body["usageMetadata"] = usage_json(usage, cost)
    return body


@bp.post("/<api_version>/models/<path:model_action>")
def generate(api_version: str, model_action: str):  # type: ignore[no-untyped-def]
    model, _, action = model_action.rpartition(":")
    if api_version not in ("v1", "v1beta") or action not in _ACTIONS:
        raise InvalidArgument(f"expected /gemini/v1beta/models/{{model}}:generateContent or "
                              f":streamGenerateContent, got {request.path}")
    ref = parse_model_ref(model.removeprefix("models/"))
    body = chat_request(GenerateContentBody.model_validate(request.get_json(silent=True) or {}))
    key = request.headers.get("X-Routing-Key") or None
    gateway = services().gateway
    if action == "streamGenerateContent":
        stream = gateway.chat_stream(ref.name, body, version=ref.ref, key=key,
                                     api_key=api_key_name())
        response = Response(_events(stream), mimetype="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        response.call_on_close(stream.close)
        version = stream.version
    else:
        served = gateway.chat(ref.name, body, version=ref.ref, key=key,
                              api_key=api_key_name())
        response = jsonify(_response(str(served.prediction.output),
                                     served.prediction.finish_reason or "stop",
                                     served.prediction.usage, f"{ref.name}@{served.version}",
                                     served.cost))
        set_cost(response, served.cost)
        version = served.version
    response.headers["x-model-version"] = version
    return response


def _events(stream: ChatStream) -> Iterator[str]:
    """One ``GenerateContentResponse`` per piece, as Gemini's ``alt=sse`` stream; the last
    carries ``finishReason`` and ``usageMetadata`` with the cost. A piece carrying usage is
    held back until the stream has ended (the gateway prices it then), so no text waits;
    the held piece is only ever the last one. A failure mid-stream: an ``error`` event."""
    model_version = f"{stream.model}@{stream.version}"

    def event(piece: Delta, cost: int | None = None) -> str:
        body = _response(piece.text, piece.finish_reason, piece.usage, model_version, cost)
        return f"data: {json.dumps(body)}\r\n\r\n"

    try:
        held: Delta | None = None
        for piece in stream:
            if held is not None:
                yield event(held)
            held = piece if piece.usage is not None else None
            if held is None:
                yield event(piece)
        if held is not None:
            yield event(held, stream.cost)
    except Exception as exc:  # noqa: BLE001 - told to the client in-band, then ended
        status, code, message, param = protocol_errors.error_parts(exc)
        body = protocol_errors.google_body(status, code, message, param)
        yield f"data: {json.dumps(body)}\r\n\r\n"
    finally:
        stream.close()


_ERRORS = {str(s): json_content(GoogleError, d) for s, d in (
    (400, "bad input"), (401, "no or invalid key"), (403, "the key's role is too low"),
    (404, "unknown model or ref"), (409, "the version cannot be served"),
    (413, "body over the limit"), (415, "body is not JSON"),
    (429, "too many calls in flight"), (502, "the provider failed"),
    (503, "nothing deployed / unavailable"), (504, "the provider timed out"))}
EXTRA_OPERATIONS["/gemini/{api_version}/models/{model}:generateContent"] = {"post": {
    "tags": ["gemini"], "summary": "Gemini-compatible generateContent",
    "description": "Works with `google-genai` unchanged: `genai.Client(api_key=KEY, "
                   "http_options={'base_url': '<server>/gemini'})`, `model='name'` or "
                   "`'name@ref'`. `api_version` is `v1` or `v1beta`; the key is read from "
                   "`x-goog-api-key` (or `Authorization: Bearer`). The version that answered "
                   "is in `modelVersion` and the `x-model-version` header; the cost of a priced "
                   "answer in `usageMetadata.costMicroUsd`/`costUsd` and the `X-Cost-USD` "
                   "header (streams: in the last event's `usageMetadata` only). "
                   "`:streamGenerateContent?alt=sse` streams the same objects as "
                   "Server-Sent Events.",
    "operationId": "gemini_generate_content",
    "parameters": [{"name": "api_version", "in": "path", "required": True,
                    "schema": {"type": "string", "enum": ["v1", "v1beta"]}},
                   {"name": "model", "in": "path", "required": True,
                    "schema": {"type": "string"}}],
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": schema_ref(GenerateContentBody)}}},
    "responses": {"200": json_content(GenerateContentResponse, "the answer"), **_ERRORS}}}
EXTRA_OPERATIONS["/gemini/{api_version}/models/{model}:streamGenerateContent"] = {"post": {
    **EXTRA_OPERATIONS["/gemini/{api_version}/models/{model}:generateContent"]["post"],
    "summary": "Gemini-compatible streamGenerateContent (`?alt=sse`)",
    "operationId": "gemini_stream_generate_content",
    "responses": {"200": {"description": "Server-Sent Events of GenerateContentResponse",
                          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                  **_ERRORS}}}
