"""A local fake of the Gemini API's ``generateContent`` and ``streamGenerateContent`` (``alt=sse``)
endpoints, for tests without network.

Why: the ``gemini`` provider must be tested through the real ``google-genai`` SDK (wire
format, headers, retries, timeouts), not through a mock of the SDK. Tests point the SDK at
this server with ``GOOGLE_GEMINI_BASE_URL=fake.url``.

Deterministic replies, so tests can assert on them:

- reply text: ``"echo: " + <text of the last content's text parts>``, cut to
  ``generationConfig.maxOutputTokens`` words (then ``finishReason`` is ``MAX_TOKENS``);
- ``promptTokenCount``: words (``str.split``) in every text part of ``contents`` plus
  ``systemInstruction``; ``candidatesTokenCount``: words in the reply text;
  ``totalTokenCount``: their sum. ``set_usage(model, ...)`` replaces these counts by fixed ones
  (with ``cachedContentTokenCount`` and ``thoughtsTokenCount`` when given), so cost tests
  know every call's exact usage;
- ``streamGenerateContent?alt=sse``: the same reply as Server-Sent Events, one word per chunk
  (``chunk_delay`` seconds apart), the last chunk carrying ``finishReason`` and
  ``usageMetadata``, as Gemini does. A client that hangs up mid-stream is logged
  (``"disconnected": True`` in its call).

Errors are Google-style bodies: ``{"error": {"code", "message", "status"}}``.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import LocalHTTPServer

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ERROR_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}
_API_VERSIONS = ("v1", "v1beta")
_ACTIONS = ("generateContent", "streamGenerateContent")


@dataclass
class Behavior:
    """How the fake answers calls for one model id (or for every model: ``model=None``)."""

    latency: float = 0.0
    error_rate: float = 0.0
    status: int = 500
    hang: bool = False
    hang_s: float = 30.0
    usage: dict[str, int] | None = None      # fixed usageMetadata (set_usage)
    chunk_delay: float = 0.0
    # Running sum of error_rate: a call fails each time it crosses an integer, so a rate of
    # 0.25 fails exactly every 4th call — deterministic, unlike random sampling.
    _error_credit: float = 0.0

    def should_fail(self) -> bool:
        if self.error_rate <= 0:
            return False
        before = self._error_credit
        self._error_credit += self.error_rate
        return int(self._error_credit + 1e-9) > int(before + 1e-9)


def _words(text: str) -> int:
    return len(text.split())


def _texts(content: Any) -> list[str]:
    if not isinstance(content, dict):
        return []
    return [p["text"] for p in content.get("parts") or []
            if isinstance(p, dict) and isinstance(p.get("text"), str)]


class FakeGemini:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 (free port) speaking Gemini's REST JSON.

    Use as ``with FakeGemini() as fake: ...`` or ``start()`` / ``stop()``. When ``api_key``
    is given, any other key is refused the way Gemini does (400 ``API_KEY_INVALID``);
    a request without ``x-goog-api-key`` is always refused (403).
    """

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._behaviors: dict[str | None, Behavior] = {}
        self._calls: list[dict[str, Any]] = []
        self._released = threading.Event()
        self._server: LocalHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "FakeGemini":
        """Bind a free port and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._released.clear()
        self._server = LocalHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        # A short poll interval keeps stop() (which waits for one poll) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name="fake-gemini", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; calls stuck in hang mode are released at once."""
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeGemini":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to put in ``GOOGLE_GEMINI_BASE_URL``."""
        if self._server is None:
            raise RuntimeError("FakeGemini is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- controls ----------------------------------------------------------------------

    def set_behavior(self, model: str | None = None, latency: float = 0.0,
                     error_rate: float = 0.0, status: int = 500, hang: bool = False,
                     hang_s: float = 30.0, chunk_delay: float = 0.0) -> None:
        """Set how calls for ``model`` (``None``: every model without its own) are answered.

        ``error_rate`` is the fraction of calls answered with ``status`` (spread evenly,
        deterministic); ``hang`` sleeps ``hang_s`` seconds (or until ``stop()``) before
        answering normally, to exercise client timeouts.
        """
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        with self._lock:
            usage = (self._behaviors.get(model) or Behavior()).usage
            self._behaviors[model] = Behavior(latency=latency, error_rate=error_rate,
                                              status=status, hang=hang, hang_s=hang_s,
                                              chunk_delay=chunk_delay, usage=usage)

    def set_usage(self, model: str | None, prompt: int, candidates: int, thoughts: int = 0,
                  cached: int = 0) -> None:
        """Answer calls for ``model`` with this exact ``usageMetadata`` (Gemini's field
        meanings: ``thoughts`` come on top of ``candidates``; ``cached`` is part of
        ``prompt``)."""
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                 "totalTokenCount": prompt + candidates + thoughts}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if cached:
            usage["cachedContentTokenCount"] = cached
        with self._lock:
            behavior = self._behaviors.setdefault(model, Behavior())
            behavior.usage = usage

    def reset(self) -> None:
        """Forget every behavior and the call log."""
        with self._lock:
            self._behaviors.clear()
            self._calls.clear()

    @property
    def calls(self) -> list[dict[str, Any]]:
        """A copy of the call log: ``{"time", "method", "path", "api_version", "model",
        "headers", "body", "status"}`` per request, oldest first."""
        with self._lock:
            return [dict(c) for c in self._calls]

    def call_count(self, model: str | None = None) -> int:
        """Number of requests received (for ``model`` only, when given)."""
        with self._lock:
            return sum(1 for c in self._calls if model is None or c["model"] == model)

    # -- request handling (called from server threads) --------------------------------

    def _behavior_for(self, model: str | None) -> tuple[Behavior, bool]:
        with self._lock:
            behavior = self._behaviors.get(model) or self._behaviors.get(None) or Behavior()
            return behavior, behavior.should_fail()

    def _record(self, call: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._calls.append(call)
        return call

    def _handle(self, method: str, path: str, headers: dict[str, str],
                raw_body: bytes) -> tuple[int, dict[str, Any]]:
        api_version, model, action = _parse_path(path)
        try:
            body = json.loads(raw_body or b"{}")
        except ValueError:
            body = None
        call = self._record({"time": time.time(), "method": method, "path": path,
                             "api_version": api_version, "model": model,
                             "headers": headers, "body": body, "status": None})

        def answer(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            with self._lock:
                call["status"] = status
            return status, payload

        if method != "POST" or action not in _ACTIONS or api_version is None:
            return answer(404, _error(404, f"Method not found: {method} {path}"))
        # The header (the SDK's way), or ?key= (accepted by Gemini too; some proxies use it).
        key = headers.get("x-goog-api-key") or parse_qs(urlsplit(path).query).get(
            "key", [None])[0]
        if not key:
            return answer(403, _error(403, "Method doesn't allow unregistered callers "
                                           "(callers without established identity). "
                                           "Please use API Key or other form of API consumer "
                                           "identity to call this API."))
        if self.api_key is not None and key != self.api_key:
            return answer(400, _error(400, "API key not valid. Please pass a valid API key.",
                                      reason="API_KEY_INVALID"))
        if not isinstance(body, dict) or not isinstance(body.get("contents"), list):
            return answer(400, _error(400, "Invalid JSON payload: 'contents' is required"))

        behavior, fail = self._behavior_for(model)
        if behavior.hang:
            self._released.wait(behavior.hang_s)
        elif behavior.latency > 0:
            self._released.wait(behavior.latency)
        if fail:
            status = behavior.status
            error = _error(status, _ERROR_MESSAGES.get(status, f"fake error {status}"))
            if status == 429:  # as Gemini does for quota errors
                error["error"]["details"] = [{
                    "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]
            return answer(status, error)
        reply = _reply(model or "", body)
        if behavior.usage is not None:
            reply["usageMetadata"] = dict(behavior.usage)
        if action == "streamGenerateContent":
            return answer(200, {"stream": _chunks(reply), "chunk_delay": behavior.chunk_delay,
                                "call": call})
        return answer(200, reply)


def _chunks(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """One reply → stream chunks of one word each; the last has finishReason and usage."""
    candidate = reply["candidates"][0]
    words = candidate["content"]["parts"][0]["text"].split(" ")
    chunks = []
    for i, word in enumerate(words):
        last = i == len(words) - 1
        part = {"text": word if i == 0 else " " + word}
        chunk: dict[str, Any] = {
            "candidates": [{"content": {"parts": [part], "role": "model"}, "index": 0}],
            "modelVersion": reply["modelVersion"], "responseId": reply["responseId"]}
        if last:
            chunk["candidates"][0]["finishReason"] = candidate["finishReason"]
            chunk["usageMetadata"] = reply["usageMetadata"]
        chunks.append(chunk)
    return chunks


def _parse_path(path: str) -> tuple[str | None, str | None, str | None]:
    """``/v1beta/models/m:generateContent`` → ``("v1beta", "m", "generateContent")``."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) != 3 or parts[0] not in _API_VERSIONS or parts[1] != "models":
        return None, None, None
    model, _, action = parts[2].partition(":")
    return parts[0], model, action or None


def _error(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message,
                             "status": _STATUS_NAMES.get(code, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": reason, "domain": "googleapis.com"}]
    return {"error": error}


def _reply(model: str, body: dict[str, Any]) -> dict[str, Any]:
    contents = body.get("contents") or []
    prompt_words = sum(_words(t) for c in contents for t in _texts(c))
    prompt_words += sum(_words(t) for t in _texts(body.get("systemInstruction")))
    last = " ".join(_texts(contents[-1])) if contents else ""
    words = f"echo: {last}".split()
    finish = "STOP"
    max_tokens = (body.get("generationConfig") or {}).get("maxOutputTokens")
    if isinstance(max_tokens, int) and len(words) > max_tokens:
        words, finish = words[:max_tokens], "MAX_TOKENS"
    text = " ".join(words)
    return {
        "candidates": [{
            "content": {"parts": [{"text": text}], "role": "model"},
            "finishReason": finish,
            "index": 0,
        }],
        "usageMetadata": {
            "promptTokenCount": prompt_words,
            "candidatesTokenCount": len(words),
            "totalTokenCount": prompt_words + len(words),
        },
        "modelVersion": model,
        "responseId": f"fake-{time.monotonic_ns()}",
    }


def _make_handler(fake: FakeGemini) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's httpx client expects
        # Headers and body leave in one segment: no Nagle / delayed-ACK stall per call.
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake._handle(self.command, self.path, headers, raw)
            if "stream" in payload:
                self._stream(payload)
                return
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout): nothing to answer

        def _stream(self, payload: dict[str, Any]) -> None:
            """SSE over chunked transfer encoding, one event per chunk, flushed each."""
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, chunk in enumerate(payload["stream"]):
                    if i and payload["chunk_delay"]:
                        time.sleep(payload["chunk_delay"])
                    event = f"data: {json.dumps(chunk)}\r\n\r\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                with fake._lock:
                    payload["call"]["disconnected"] = True
                self.close_connection = True

        do_POST = _serve
        do_GET = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
