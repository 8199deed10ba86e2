"""The ``gemini`` provider: a version is a reviewed (Gemini model id + system instruction +
generation settings) bundle, called through the official ``google-genai`` SDK.

The SDK is configured so that the service alone decides about retries and deadlines: SDK
retries, automatic continuation and automatic function calling are off, so one
``predict`` is exactly one HTTP call bounded by ``PROVIDER_TIMEOUT_S``. The endpoint is the
wired settings' ``gemini_base_url`` when they carry one (``main.py`` passes a local one);
otherwise the SDK reads its own ``GOOGLE_GEMINI_BASE_URL``.

Error mapping (SDK / transport → ``errors``):

===========================================  ======================================================
timeout (httpx/httpx2 ``TimeoutException``)  ``ProviderTimeout`` "gemini call timed out after Ns"
HTTP 504 ``DEADLINE_EXCEEDED``               ``ProviderTimeout`` (the server-side deadline)
HTTP 429                                     ``Unavailable`` rate limited (+ ``retry_after_s``)
HTTP 401 / 403, 400 ``API_KEY_INVALID``      ``Unavailable`` (the key was refused)
other HTTP 4xx (400, 404, ...)               ``ProviderError`` (provider's message)
HTTP 5xx (500, 503, ...)                     ``ProviderError`` (provider's message)
connection / protocol errors                 ``ProviderError``
no key configured                            ``Unavailable`` naming ``GEMINI_API_KEY`` and the fix
prompt or answer blocked by Gemini           ``ProviderError`` (block / finish reason)
===========================================  ======================================================

A Gemini 400 is a ``ProviderError``, not ``InvalidArgument``: inputs are validated here before
the call, so a 400 that still comes back is, in practice, a config the model rejects (a
setting out of range for that model, an unknown model feature) — a fault of the version that
canary analysis must count against it — and Gemini's 400s do not reliably say which side is
at fault. ``details`` always carries ``http_status`` and the provider's ``provider_status``.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
import time
from collections.abc import Iterator
from typing import Any, Callable, ClassVar

from pydantic import ValidationError

import config as app_config
from errors import InvalidArgument, ProviderError, ProviderTimeout, Unavailable
from models.base_model import (ChatRequest, Delta, HealthResult, ModelProvider, Prediction,
                               Usage, VersionSpec)
from shared.lazy_import import lazy_module

genai = lazy_module("google.genai")   # ~0.4 s: only Gemini-serving processes pay it


def _transport_exceptions() -> tuple[tuple[type[BaseException], ...],
                                     tuple[type[BaseException], ...]]:
    """The SDK uses ``httpx2`` (and ``httpx`` when installed); catch whichever exists."""
    timeouts: list[type[BaseException]] = []
    transports: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transports.append(module.TransportError)
    return tuple(timeouts), tuple(transports)


_TIMEOUT_EXC, _TRANSPORT_EXC = _transport_exceptions()


# -- config validation ----------------------------------------------------------------------

def _number(lo: float | None = None, hi: float | None = None) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgument(f"{name} must be a number, got {type(value).__name__}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise InvalidArgument(f"{name} must be between {lo} and {hi}, got {value}")
        return float(value)
    return check


def _integer(lo: int | None = None, hi: int | None = None) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{name} must be an integer, got {type(value).__name__}")
        if lo is not None and value < lo:
            raise InvalidArgument(f"{name} must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise InvalidArgument(f"{name} must be <= {hi}, got {value}")
        return value
    return check


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name} must be a non-empty string")
    return value


def _stop_sequences(name: str, value: Any) -> list[str]:
    if (not isinstance(value, list) or len(value) > 5
            or not all(isinstance(s, str) and s for s in value)):
        raise InvalidArgument(f"{name} must be a list of at most 5 non-empty strings")
    return list(value)


def _mime_type(name: str, value: Any) -> str:
    if not isinstance(value, str) or "/" not in value:
        raise InvalidArgument(f"{name} must be a MIME type such as 'text/plain' or "
                              f"'application/json'")
    return value


def _candidate_count(name: str, value: Any) -> int:
    if value != 1 or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be 1: a prediction returns one text")
    return 1


# Generation settings: the keys a request's ``params`` may override (when allowed).
_GENERATION_SETTINGS: dict[str, Callable[[str, Any], Any]] = {
    "temperature": _number(0.0, 2.0),
    "top_p": _number(0.0, 1.0),
    "top_k": _integer(1),
    "max_output_tokens": _integer(1),
    "stop_sequences": _stop_sequences,
    "candidate_count": _candidate_count,
    "response_mime_type": _mime_type,
    "seed": _integer(),
}
_OTHER_KEYS: dict[str, Callable[[str, Any], Any]] = {
    "model": _string,
    "system_instruction": _string,
    "sample_input": _string,  # the base class's generic health-probe input
}
DEFAULT_ALLOWED_PARAMS: tuple[str, ...] = (
    "temperature", "top_p", "top_k", "max_output_tokens", "stop_sequences", "seed")
_HEALTH_MAX_OUTPUT_TOKENS = 16


def _allowed_params(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise InvalidArgument(f"{name} must be a list of generation setting names")
    unknown = [p for p in value if p not in _GENERATION_SETTINGS]
    if unknown:
        raise InvalidArgument(f"{name} names unknown generation settings {unknown}; "
                              f"choose from {sorted(_GENERATION_SETTINGS)}")
    return list(dict.fromkeys(value))


# -- the provider ---------------------------------------------------------------------------

class GeminiModel(ModelProvider):
    """One registered Gemini version: one ``genai.Client`` shared by every serving thread."""

    name: ClassVar[str] = "gemini"
    generates_text: ClassVar[bool] = True

    def __init__(self, spec: VersionSpec) -> None:
        super().__init__(spec)
        self._lock = threading.Lock()
        self._client: genai.Client | None = None
        self._closed = False
        self._model_id = ""
        self._timeout_s = 0.0
        self._base_url: str | None = None
        self._allowed: frozenset[str] = frozenset()
        self._base_config: genai.types.GenerateContentConfig | None = None

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Reject what could never load; pin ``model`` so a version stays an immutable
        bundle even if ``GEMINI_MODEL`` changes later."""
        config = super().validate_config(config)
        known = {**_GENERATION_SETTINGS, **_OTHER_KEYS, "allowed_params": _allowed_params}
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise InvalidArgument(
                f"unknown gemini config key(s) {unknown}; allowed keys: {sorted(known)}",
                details={"unknown_keys": unknown})
        normalised = {key: known[key](key, value) for key, value in config.items()}
        normalised.setdefault("model", app_config.get_settings().gemini_model)
        return normalised

    def load(self) -> None:
        """Build the generation config and the SDK client; a missing key is not fatal here
        (versions can be registered and loaded without one), it fails at predict time."""
        cfg = self.validate_config(dict(self.spec.config))
        settings = app_config.get_settings()
        # The wiring's settings may name a Gemini endpoint and key of their own (main.py's
        # offline demo); the rest, and these when they name none, is the process's
        # configuration, read at load (a test that changes the environment sees the change).
        wired = self.spec.settings
        self._base_url = wired.gemini_base_url if wired else None
        api_key = (wired.gemini_api_key if wired else None) or settings.gemini_api_key
        self._model_id = cfg["model"]
        self._timeout_s = settings.provider_timeout_s
        self._allowed = frozenset(cfg.get("allowed_params", DEFAULT_ALLOWED_PARAMS))
        self._base_config = genai.types.GenerateContentConfig(
            system_instruction=cfg.get("system_instruction"),
            **{k: v for k, v in cfg.items() if k in _GENERATION_SETTINGS},
            # One predict = one HTTP call: no SDK-driven follow-up requests.
            automatic_function_calling=genai.types.AutomaticFunctionCallingConfig(disable=True),
            automatic_continuation=False,
        )
        with self._lock:
            self._closed = False
            if self._client is None and api_key:
                self._client = self._new_client(api_key)

    def _new_client(self, api_key: str) -> genai.Client:
        # HttpOptions.timeout is in milliseconds (the SDK divides by 1000 for httpx).
        http_options = genai.types.HttpOptions(
            base_url=self._base_url,
            timeout=max(1, round(self._timeout_s * 1000)) if self._timeout_s > 0 else None,
            retry_options=genai.types.HttpRetryOptions(attempts=1),
        )
        return genai.Client(api_key=api_key, vertexai=False, http_options=http_options)

    def _get_client(self) -> genai.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise Unavailable(f"gemini version {self.spec.model}@{self.spec.version} "
                                  f"is closed")
            if self._base_config is None:
                raise Unavailable(f"gemini version {self.spec.model}@{self.spec.version} "
                                  f"is not loaded")
            if self._client is None:
                # The key may have been added since load(): look again, only on this path.
                key = app_config.fresh_settings().gemini_api_key
                if not key:
                    raise Unavailable(
                        "the gemini provider needs an API key: GEMINI_API_KEY is not set; "
                        "set GEMINI_API_KEY in the environment or .env "
                        "(GOOGLE_API_KEY is also accepted)",
                        details={"missing": "GEMINI_API_KEY"})
                self._client = self._new_client(key)
            return self._client

    def predict(self, input: Any, params: dict[str, Any] | None = None) -> Prediction:
        """Generate text for ``input`` (a prompt string, a list of strings / Gemini contents,
        or ``{"prompt": str}``), with allowed ``params`` overriding the version's settings."""
        contents = _to_contents(input)
        overrides = self._check_params(params)
        return self._generate(contents, overrides)

    def _check_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        if not params:
            return {}
        if not isinstance(params, dict):
            raise InvalidArgument("params must be a JSON object")
        overrides = {}
        for key, value in params.items():
            if key not in self._allowed:
                raise InvalidArgument(
                    f"param '{key}' is not allowed for this gemini version; allowed: "
                    f"{sorted(self._allowed)}",
                    details={"param": key, "allowed_params": sorted(self._allowed)})
            overrides[key] = _GENERATION_SETTINGS[key](key, value)
        return overrides

    def chat(self, request: ChatRequest) -> Prediction:
        """One answer to a conversation: system messages join the version's own system
        instruction (after it), the other turns become Gemini contents."""
        contents, system = _chat_contents(request)
        return self._generate(contents, self._check_params(request.params), system,
                              text_of=_chunk_text)

    def chat_stream(self, request: ChatRequest) -> Iterator[Delta]:
        """The answer as it is generated (``generate_content_stream``: Gemini's
        ``streamGenerateContent?alt=sse``). Closing this iterator closes the HTTP stream."""
        contents, system = _chat_contents(request)
        overrides = self._check_params(request.params)
        client, cfg = self._call_setup(overrides, system)
        with self._mapped_errors():
            stream = client.models.generate_content_stream(
                model=self._model_id, contents=contents, config=cfg)
        try:
            usage = None
            while True:
                with self._mapped_errors():
                    chunk = next(stream, None)
                if chunk is None:
                    break
                usage = _usage_of(chunk) or usage
                finish = _finish_reason(chunk)
                text = _chunk_text(chunk)
                if text or finish:
                    yield Delta(text, finish, usage if finish else None)
                if finish:
                    break
        finally:
            stream.close()

    def _call_setup(self, overrides: dict[str, Any], system: str | None = None
                    ) -> tuple[genai.Client, genai.types.GenerateContentConfig]:
        client = self._get_client()
        assert self._base_config is not None  # set by load(), checked by _get_client()
        if system:
            base = self._base_config.system_instruction
            overrides = {**overrides, "system_instruction":
                         f"{base}\n\n{system}" if base else system}
        cfg = self._base_config.model_copy(update=overrides) if overrides else \
            self._base_config
        return client, cfg

    def _generate(self, contents: Any, overrides: dict[str, Any], system: str | None = None,
                  text_of: Callable[[genai.types.GenerateContentResponse], str] | None = None
                  ) -> Prediction:
        """One call. ``text_of`` reads the answer: by default a blocked answer is an error
        (predict); chat reads it as an empty text with finish reason ``content_filter``."""
        client, cfg = self._call_setup(overrides, system)
        with self._mapped_errors():
            response = client.models.generate_content(
                model=self._model_id, contents=contents, config=cfg)
        return Prediction(output=(text_of or _text_of)(response), usage=_usage_of(response),
                          finish_reason=_finish_reason(response))

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """SDK and transport exceptions → the errors of ``errors`` (table in the docstring)."""
        try:
            yield
        except genai.errors.APIError as exc:
            raise self._map_api_error(exc) from exc
        except genai.errors.UnknownApiResponseError as exc:
            raise ProviderError(f"gemini answered something that is not a response: {exc}",
                                details={"http_status": 200}) from exc
        except _TIMEOUT_EXC as exc:
            raise ProviderTimeout(f"gemini call timed out after {self._timeout_s:g}s",
                                  details={"timeout_s": self._timeout_s}) from exc
        except _TRANSPORT_EXC as exc:
            raise ProviderError(f"gemini call failed: cannot reach the Gemini API "
                                f"({type(exc).__name__}: {exc})",
                                details={"http_status": None}) from exc
        except RuntimeError as exc:
            if self._closed:  # close() raced with this call: httpx refuses a closed client
                raise Unavailable(f"gemini version {self.spec.model}@{self.spec.version} "
                                  f"is closed") from exc
            raise

    def _map_api_error(self, exc: genai.errors.APIError) -> Exception:
        code = exc.code
        message = exc.message or str(exc)
        details: dict[str, Any] = {"http_status": code, "provider_status": exc.status}
        if code == 429:
            retry_after = _retry_delay_s(exc)
            if retry_after is not None:
                details["retry_after_s"] = retry_after
            return Unavailable(f"gemini rate limited the request (HTTP 429): {message}",
                               details=details)
        if code in (401, 403) or _is_key_invalid(exc):
            return Unavailable(
                f"gemini refused the API key (HTTP {code}): {message}; check GEMINI_API_KEY "
                f"in the environment or .env", details=details)
        if code == 504:
            return ProviderTimeout(f"gemini call timed out on the server (HTTP 504): "
                                   f"{message}", details=details)
        return ProviderError(f"gemini returned HTTP {code}: {message}", details=details)

    def sample_input(self) -> Any:
        """The health probe's prompt: config ``sample_input``, else ``"ping"``."""
        return self.spec.config.get("sample_input") or "ping"

    def health(self) -> HealthResult:
        """Probe with a tiny prompt and a small output budget, whatever ``allowed_params``
        says (the probe is not a caller's request); never raises."""
        started = time.perf_counter()
        try:
            self._generate(_to_contents(self.sample_input()),
                           {"max_output_tokens": _HEALTH_MAX_OUTPUT_TOKENS})
        except Exception as exc:  # a probe reports, it does not propagate
            return HealthResult(False, time.perf_counter() - started, str(exc))
        return HealthResult(True, time.perf_counter() - started)

    def close(self) -> None:
        """Close the SDK client (its HTTP connection pool)."""
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            client.close()


# -- helpers --------------------------------------------------------------------------------

def _to_contents(input: Any) -> str | list[Any]:
    """Validate the request input and turn it into SDK ``contents``."""
    if isinstance(input, dict) and set(input) == {"prompt"}:
        input = input["prompt"]
    if isinstance(input, str):
        if not input.strip():
            raise InvalidArgument("input must be a non-empty prompt string")
        return input
    if isinstance(input, list) and input:
        contents: list[Any] = []
        for i, item in enumerate(input):
            if isinstance(item, str):
                contents.append(item)
            elif isinstance(item, dict) and isinstance(item.get("parts"), list):
                if item.get("role", "user") not in ("user", "model"):
                    raise InvalidArgument(f"input[{i}].role must be 'user' or 'model'")
                try:
                    contents.append(genai.types.Content.model_validate(item))
                except ValidationError as exc:
                    raise InvalidArgument(f"input[{i}] is not a valid Gemini content: "
                                          f"{exc.errors()[0].get('msg', exc)}") from None
            else:
                raise InvalidArgument(f"input[{i}] must be a string or a content object "
                                      f'{{"role": "user"|"model", "parts": [{{"text": ...}}]}}')
        return contents
    raise InvalidArgument('input must be a prompt string, a non-empty list of strings or '
                          'contents, or {"prompt": "..."}')


def _chat_contents(request: ChatRequest) -> tuple[list[genai.types.Content], str | None]:
    """Messages → (Gemini contents, the request's system text or None)."""
    system = "\n\n".join(m.text for m in request.messages if m.role == "system") or None
    contents = [genai.types.Content(role="model" if m.role == "assistant" else "user",
                              parts=[genai.types.Part(text=m.text)])
                for m in request.messages if m.role != "system"]
    if not contents:
        raise InvalidArgument("messages must hold at least one user message",
                              details={"param": "messages"})
    return contents, system


def _chunk_text(chunk: genai.types.GenerateContentResponse) -> str:
    """The text of one streamed chunk (thought parts excluded); blocked → ProviderError."""
    if not chunk.candidates:
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason:
            return _text_of(chunk)  # raises with the block reason
        return ""
    content = chunk.candidates[0].content
    return "".join(p.text for p in (content.parts or []) if p.text and not p.thought) \
        if content else ""


# Gemini finish reasons → the protocol-neutral ones of ``Prediction.finish_reason``.
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}


def _finish_reason(response: genai.types.GenerateContentResponse) -> str | None:
    if not response.candidates or response.candidates[0].finish_reason is None:
        return None
    value = getattr(response.candidates[0].finish_reason, "value",
                    response.candidates[0].finish_reason)
    if value in _FINISH:
        return _FINISH[value]
    return "content_filter" if value in _BLOCKED else "other"


_BLOCKED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
            "IMAGE_SAFETY", "LANGUAGE"}


def _text_of(response: genai.types.GenerateContentResponse) -> str:
    """The first candidate's text; ``""`` when the budget ran out before any text (thinking
    models under a small ``max_output_tokens``); an error when Gemini blocked the answer."""
    if not response.candidates:
        feedback = response.prompt_feedback
        reason = getattr(getattr(feedback, "block_reason", None), "value", None)
        raise ProviderError(f"gemini returned no candidates (prompt blocked: {reason})",
                            details={"http_status": 200, "block_reason": reason})
    text = response.text
    if text is None:
        finish = getattr(response.candidates[0].finish_reason, "value", None)
        if finish in _BLOCKED:
            raise ProviderError(f"gemini returned no text (finish reason {finish})",
                                details={"http_status": 200, "finish_reason": finish})
        return ""
    return text


def _usage_of(response: genai.types.GenerateContentResponse) -> Usage | None:
    meta = response.usage_metadata
    if meta is None:
        return None
    prompt = meta.prompt_token_count or 0
    # Thinking tokens are billed as output; count them so input + output == total.
    thinking = meta.thoughts_token_count or 0
    output = (meta.candidates_token_count or 0) + thinking
    total = meta.total_token_count or (prompt + output)
    return Usage(input_tokens=prompt, output_tokens=output, total_tokens=total,
                 cached_tokens=meta.cached_content_token_count or 0, reasoning_tokens=thinking)


def _is_key_invalid(exc: genai.errors.APIError) -> bool:
    """Gemini answers a wrong key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID."""
    if exc.code != 400:
        return False
    try:
        blob = json.dumps(exc.details, default=str)
    except (TypeError, ValueError):
        blob = str(exc.details)
    return "API_KEY_INVALID" in blob or "API key not valid" in (exc.message or "")


def _retry_delay_s(exc: genai.errors.APIError) -> float | None:
    """The server's suggested wait from a ``google.rpc.RetryInfo`` detail (``"13s"``), so
    the service's own retry policy can honour it."""
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error", body)
    for item in (error.get("details") if isinstance(error, dict) else None) or []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            delay = str(item.get("retryDelay", ""))
            try:
                return float(delay.rstrip("s"))
            except ValueError:
                return None
    return None
