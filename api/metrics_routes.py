"""Performance: per-version metrics, comparisons, time series, alerts, Prometheus."""
from __future__ import annotations

from flask import Blueprint, Response as FlaskResponse
from spectree import Response

from api.schemas import (AlertList, AlertsQuery, CompareQuery, Comparison, ErrorOut,
                         MetricsQuery, ModelMetrics, Series, SeriesQuery)
from api.services import services
from api.spec import spec
from tracking import prometheus
from tracking.metrics_collector import pinned_key

bp = Blueprint("metrics", __name__)
TAGS = ["metrics"]
E = {"HTTP_400": ErrorOut, "HTTP_404": ErrorOut}


def _tracked(name: str, traffic: str) -> str:
    """The name metrics are kept under: pinned predictions are recorded apart."""
    return pinned_key(name) if traffic == "pinned" else name


def _version(name: str, ref: str | None) -> str | None:
    """The exact version an alias or range names; the model must exist."""
    registry = services().registry
    if ref is None:
        registry.get_model(name)
        return None
    return registry.resolve(name, ref).text


@bp.get("/api/models/<name>/metrics")
@spec.validate(query=MetricsQuery, resp=Response(HTTP_200=ModelMetrics, **E), tags=TAGS)
def model_metrics(name: str, query: MetricsQuery):
    """Latency (avg, p50, p95, p99 in seconds), success rate (percent), error rate (fraction),
    tokens and throughput per version, over `window` (default: everything kept).
    `traffic=pinned` reports the predictions that pinned a version, kept apart from the routed
    traffic (the default) so that they never steer a rollout, the watcher or alerts."""
    version = _version(name, query.version)
    tracker, tracked = services().tracker, _tracked(name, query.traffic)
    if version is None:
        versions = tracker.get_metrics(tracked, None, query.window)
    else:
        versions = {version: tracker.get_metrics(tracked, version, query.window)}
    return {"model": name, "window": query.window, "traffic": query.traffic,
            "versions": versions}


@bp.get("/api/models/<name>/compare")
@spec.validate(query=CompareQuery, resp=Response(HTTP_200=Comparison, **E), tags=TAGS)
def compare(name: str, query: CompareQuery):
    """Two versions side by side, with deltas and ratios (v2 against v1); `traffic` as in
    the metrics."""
    v1, v2 = _version(name, query.v1), _version(name, query.v2)
    answer = services().tracker.compare_versions(_tracked(name, query.traffic), v1, v2,
                                                 query.window)
    return {**answer, "model": name, "traffic": query.traffic}


@bp.get("/api/models/<name>/metrics/series")
@spec.validate(query=SeriesQuery, resp=Response(HTTP_200=Series, **E), tags=TAGS)
def series(name: str, query: SeriesQuery):
    """Metrics per `step` over `window`, per version (for charts).

    `window` (default `1h`) and `step` (default `1m`) are durations such as `30s`, `15m`,
    `24h`, `7d`. The step is rounded up to whole stored buckets — 10 s for the last day, 5 min
    for the last week, 1 h beyond — and the answer's `step` gives the one used, in seconds
    (`window` too); at most 1440 points. With `version` (exact, an alias or a range) `points`
    is a list; without it, `{version: [...]}` for every version with data in the window. Each
    point is `{"start", "end"}` (ISO 8601 UTC) plus that interval's metrics: `requests`,
    `successes`, `failures`, `success_rate` (percent), `error_rate` (fraction), `avg_latency`,
    `p50_latency`, `p95_latency`, `p99_latency`, `min_latency`, `max_latency` (seconds),
    `input_tokens`, `output_tokens`, `total_tokens`, `avg_tokens`, `throughput` (requests/s)
    and `errors` (failures by kind); rates and latencies are null where it had no requests.
    Without `version`, at most `MAX_SERIES_VERSIONS` (20) versions are returned, the busiest;
    `versions_omitted` then says how many were left out.
    Example: `GET /api/models/lin/metrics/series?window=15m&step=10s`."""
    version = _version(name, query.version)
    answer = services().tracker.time_series(_tracked(name, query.traffic), version,
                                            query.window, query.step)
    return {**answer, "model": name, "traffic": query.traffic}


@bp.get("/api/alerts")
@spec.validate(query=AlertsQuery, resp=Response(HTTP_200=AlertList, HTTP_400=ErrorOut),
               tags=TAGS)
def list_alerts(query: AlertsQuery):
    """Alerts newest first; `active=true` for the ones not resolved yet."""
    alerts, token = services().alerts.list_alerts(query.model, query.active, query.limit,
                                                  query.page_token)
    return {"alerts": alerts, "next_page_token": token}


@bp.get("/metrics")
def prometheus_metrics():
    """Prometheus exposition (all gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set)."""
    services().collector.flush()
    svc = services()
    body, content_type = prometheus.render(svc.settings.prometheus_multiproc_dir,
                                           svc.ops_metrics)
    return FlaskResponse(body, content_type=content_type)
