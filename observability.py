"""Structured logs and OpenTelemetry spans (issue 20); a shared helper below every layer.

- Logs: every record carries the request id, model, version and deployment of the work it
  belongs to (``bind`` sets them in a context variable; ``ContextFilter`` copies them onto
  records). ``LOG_FORMAT=json`` prints one JSON object per line (python-json-logger).
- Spans: ``span(name, **attributes)`` around the request, the routing, the provider call, and
  every SQL statement. When ``OTEL_EXPORTER_OTLP_ENDPOINT`` is not set, tracing is off and
  ``span`` returns one shared no-op context manager: no SDK object, no SQL hook, nothing
  allocated per call (bench/bench_gateway.py prints the cost side by side).
"""
from __future__ import annotations

import contextlib
import logging
from contextvars import ContextVar
from typing import Any

from config import Settings

FIELDS = ("request_id", "model", "version", "deployment")
# Two variables, each set with one call: the hot path pays ~100 ns, not a dict merge.
_request_id: ContextVar[str] = ContextVar("request_id", default="")
_route: ContextVar[tuple[str, str, str]] = ContextVar("route", default=("", "", ""))
_NOOP = contextlib.nullcontext()
_state: dict[str, Any] = {"tracer": None, "provider": None}


# -- log context -----------------------------------------------------------------------------
def bind_request(request_id: str) -> None:
    """A new request: its id on every log line, and no model/version/deployment yet."""
    _request_id.set(request_id)
    _route.set(("", "", ""))


def bind_route(model: str, version: str, deployment: str | None) -> None:
    """What this request is served by, on its log lines from here on."""
    _route.set((model, version, deployment or ""))


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        values = (_request_id.get(), *_route.get())
        for name, value in zip(FIELDS, values):
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def configure_logging(settings: Settings) -> None:
    """The root handlers' format: text (default, left as the program set it) or JSON lines
    (``LOG_FORMAT=json``; a stderr handler at INFO is added when there is none, as under
    gunicorn). Either way records carry the request's fields for any format that names them."""
    root = logging.getLogger()
    if not root.handlers and settings.log_format == "json":
        logging.basicConfig(level=logging.INFO)
    for handler in root.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        if settings.log_format == "json":
            from pythonjsonlogger.json import JsonFormatter
            handler.setFormatter(JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s "
                "%(request_id)s %(model)s %(version)s %(deployment)s",
                rename_fields={"levelname": "level", "name": "logger", "asctime": "time"}))


# -- tracing ---------------------------------------------------------------------------------
def tracing_enabled() -> bool:
    return _state["tracer"] is not None


def configure_tracing(settings: Settings | None = None, exporter: Any = None) -> bool:
    """Turn tracing on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (or an ``exporter`` is
    given, as the tests do). Returns whether it is on."""
    endpoint = settings.otel_exporter_otlp_endpoint if settings else None
    if exporter is None and not endpoint:
        return tracing_enabled()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    service = settings.otel_service_name if settings else "model-registry"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    if _state["provider"] is not None:
        _state["provider"].shutdown()
    _state.update(provider=provider, tracer=provider.get_tracer("model-registry"))
    return True


def shutdown_tracing() -> None:
    """Flush and stop (tests; process exit flushes on its own)."""
    if _state["provider"] is not None:
        _state["provider"].shutdown()
    _state.update(provider=None, tracer=None)


def flush() -> None:
    if _state["provider"] is not None:
        _state["provider"].force_flush()


def span(name: str) -> contextlib.AbstractContextManager:
    """A span named ``name`` (child of the current one), or a shared no-op when tracing is off.
    ``with span(...) as s``: ``s`` is None when off, so attributes are only built when on::

        with observability.span("route") as s:
            if s is not None:
                s.set_attribute("registry.model", model)
    """
    tracer = _state["tracer"]
    if tracer is None:
        return _NOOP
    return tracer.start_as_current_span(name)


def start_request_span(name: str, headers: Any, **attributes: Any) -> Any:
    """Start the server span of a request (continuing a caller's ``traceparent``) and make it
    current; returns a token for ``end_request_span``, or None when tracing is off."""
    tracer = _state["tracer"]
    if tracer is None:
        return None
    from opentelemetry import context, propagate, trace
    parent = propagate.extract(headers)
    s = tracer.start_span(name, context=parent, kind=trace.SpanKind.SERVER,
                          attributes={k: v for k, v in attributes.items() if v is not None})
    return s, context.attach(trace.set_span_in_context(s, parent))


def end_request_span(token: Any, status: int | None, error: BaseException | None) -> None:
    if token is None:
        return
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode
    s, attached = token
    if status is not None:
        s.set_attribute("http.response.status_code", status)
        if status >= 500:
            s.set_status(Status(StatusCode.ERROR))
    if error is not None:
        s.record_exception(error)
        s.set_status(Status(StatusCode.ERROR, str(error)[:200]))
    s.end()
    context.detach(attached)


def trace_engine(engine: Any) -> None:
    """A span per SQL statement on ``engine`` (only while tracing is on: no hook otherwise)."""
    if not tracing_enabled():
        return
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        tracer = _state["tracer"]
        if tracer is None:
            return
        operation = statement.lstrip().split(None, 1)[0].upper() if statement else "SQL"
        s = tracer.start_span(f"db {operation}", attributes={
            "db.system.name": engine.dialect.name, "db.operation.name": operation,
            "db.query.text": statement[:500]})
        conn.info.setdefault("_otel_spans", []).append(s)

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        spans = conn.info.get("_otel_spans")
        if spans:
            spans.pop().end()

    @event.listens_for(engine, "handle_error")
    def _error(exception_context):  # noqa: ANN001
        conn = exception_context.connection
        spans = conn.info.get("_otel_spans") if conn is not None else None
        if spans:
            from opentelemetry.trace import Status, StatusCode
            s = spans.pop()
            s.record_exception(exception_context.original_exception)
            s.set_status(Status(StatusCode.ERROR))
            s.end()

