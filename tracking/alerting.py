"""Alert rules over the aggregated metrics, and event alerts raised by other areas.

Lifecycle: an alert is identified by (model, version, rule). While it is active, raising it
again refreshes that one alert (value, message, ``updated_at``) instead of opening another; the
database enforces this across processes. ``evaluate`` resolves a metric alert (sets
``resolved_at``, ``active`` false) the first time the rule passes with enough samples; with too
few samples it neither opens nor resolves: silence is no evidence of recovery. A later breach
opens a new alert with a new id.

Metric rules (``AlertRule.metric``):

* ``error_rate``: the version's error rate (fraction) above ``threshold``.
* ``p95_latency``: the version's p95 latency (seconds) above ``threshold``.
* ``p95_latency_ratio``: p95 above ``threshold`` × the reference version's p95.
* ``success_rate_drop``: the reference's success rate minus the version's, in percentage
  points, above ``threshold``.

The reference version of a model is what ``reference_resolver(model)`` names (the deployment
layer passes "the stable version"), else the version that served the most requests in the
window: during a canary that is the stable one. A version is never compared with itself, and
both sides need ``min_requests`` requests.

Event alerts (``record_health_failure`` → rule ``health_check``, ``record_automatic_rollback``
→ ``automatic_rollback``, or any rule name through ``raise_alert``/``record_event_alert``) are
opened and resolved by the caller (``resolve``, ``record_health_success``, ``resolve_alert``);
``evaluate`` leaves them alone.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from errors import InvalidArgument
from storage.database import Database
from tracking.aggregates import BUCKET_SECONDS
from tracking.metrics_collector import is_pinned_key
from tracking.metrics_store import AlertStore
from tracking.performance_tracker import PerformanceTracker, Window, parse_window

SEVERITIES = ("info", "warning", "critical")
METRICS = ("error_rate", "p95_latency", "p95_latency_ratio", "success_rate_drop")
HEALTH_RULE = "health_check"
ROLLBACK_RULE = "automatic_rollback"
_RELATIVE = ("p95_latency_ratio", "success_rate_drop")
MAX_PAGE = 500
_MAX_ID = 2**31 - 1    # the id column is a 32-bit INTEGER on PostgreSQL


@dataclass(frozen=True)
class AlertRule:
    """One metric rule. ``name`` identifies its alerts; ``window`` is read as by get_metrics."""

    name: str
    metric: str
    threshold: float
    window: Window = "5m"
    min_requests: int = 50
    severity: str = "warning"
    # p95_latency_ratio only: a ratio over the threshold counts only when the p95s also differ
    # by more than this (seconds), so 2 ms against 1 ms (2x, noise) is not a regression.
    min_latency_delta_s: float = 0.005

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidArgument(f"unknown alert metric {self.metric!r}; one of {METRICS}")
        if self.severity not in SEVERITIES:
            raise InvalidArgument(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if not self.name or len(self.name) > 64:
            raise InvalidArgument("rule name must be 1-64 characters")
        if self.min_requests < 1:
            raise InvalidArgument("min_requests must be at least 1")
        if not self.min_latency_delta_s >= 0:
            raise InvalidArgument("min_latency_delta_s must be 0 or more")
        parse_window(self.window)


DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule("high_error_rate", "error_rate", 0.05, severity="critical"),
    AlertRule("high_p95_latency", "p95_latency", 10.0),
    AlertRule("p95_latency_regression", "p95_latency_ratio", 1.5),
    AlertRule("success_rate_drop", "success_rate_drop", 5.0, severity="critical"),
)


@dataclass
class _Finding:
    value: float
    breached: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def _check(rule: AlertRule, model: str, version: str, m: Mapping[str, Any],
           ref_version: str | None, ref: Mapping[str, Any] | None) -> _Finding | None:
    """Judge one rule on one version's metrics; None when it cannot be judged."""
    if m["requests"] < rule.min_requests:
        return None
    where = f"{model} {version}"
    details: dict[str, Any] = {"window": rule.window, "requests": m["requests"]}
    if rule.metric == "error_rate":
        value = m["error_rate"]
        return _Finding(value, value > rule.threshold,
                        f"{where}: error rate {value:.2%} > {rule.threshold:.2%}", details)
    if rule.metric == "p95_latency":
        value = m["p95_latency"]
        return _Finding(value, value > rule.threshold,
                        f"{where}: p95 latency {value:.3f}s > {rule.threshold:.3f}s", details)
    if ref is None or ref_version is None or ref["requests"] < rule.min_requests:
        return None
    details.update(reference_version=ref_version, reference_requests=ref["requests"])
    if rule.metric == "p95_latency_ratio":
        if not ref["p95_latency"]:
            return None
        value = m["p95_latency"] / ref["p95_latency"]
        details.update(p95_latency=m["p95_latency"], reference_p95_latency=ref["p95_latency"],
                       min_latency_delta_s=rule.min_latency_delta_s)
        slower_by = m["p95_latency"] - ref["p95_latency"]
        return _Finding(value, value > rule.threshold and slower_by > rule.min_latency_delta_s,
                        f"{where}: p95 latency {m['p95_latency']:.3f}s is {value:.2f}x "
                        f"{ref_version}'s {ref['p95_latency']:.3f}s (limit "
                        f"{rule.threshold:g}x)", details)
    value = ref["success_rate"] - m["success_rate"]   # success_rate_drop, percentage points
    details.update(success_rate=m["success_rate"], reference_success_rate=ref["success_rate"])
    return _Finding(value, value > rule.threshold,
                    f"{where}: success rate {m['success_rate']:.2f}% is {value:.2f} points "
                    f"below {ref_version}'s {ref['success_rate']:.2f}% (limit "
                    f"{rule.threshold:g})", details)


class AlertManager:
    """Evaluates alert rules and keeps the alert list.

    Part of the public Python API: its methods answer alerts as dicts (the wire shape,
    ``AlertRecord.as_dict()``), converted here from the records ``AlertStore`` returns."""

    def __init__(self, database: Database | None = None, *,
                 rules: Sequence[AlertRule] = DEFAULT_RULES,
                 tracker: PerformanceTracker | None = None,
                 reference_resolver: Callable[[str], str | None] | None = None) -> None:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"rule names must be unique, got {names}")
        self.tracker = tracker or PerformanceTracker(database)
        self.database = database or self.tracker.database
        self.rules = tuple(rules)
        self.reference_resolver = reference_resolver
        self.store = AlertStore(self.database)

    # --- evaluation ---------------------------------------------------------------------------

    def evaluate(self, model: str | None = None) -> list[dict[str, Any]]:
        """Judge every rule for every version with traffic in the rule's window (of ``model``,
        or of all models); returns the alerts opened, refreshed or resolved."""
        changed: list[dict[str, Any]] = []
        by_window: dict[float, list[AlertRule]] = {}
        for rule in self.rules:
            by_window.setdefault(parse_window(rule.window) or 0.0, []).append(rule)
        for seconds, rules in by_window.items():
            for name in self._models(model, seconds):
                metrics = self.tracker.get_metrics(name, window=seconds)
                ref_version = self._reference(name, metrics)
                for version, m in metrics.items():
                    ref = metrics.get(ref_version) if ref_version != version else None
                    for rule in rules:
                        finding = _check(rule, name, version, m,
                                         ref_version if ref is not None else None, ref)
                        if finding is None:
                            continue
                        if finding.breached:
                            changed.append(self.raise_alert(
                                name, version, rule.name, finding.value, rule.threshold,
                                finding.message, rule.severity, finding.details))
                        elif (resolved := self.resolve(name, version, rule.name)) is not None:
                            changed.append(resolved)
        return changed

    def _models(self, model: str | None, seconds: float) -> list[str]:
        if model is not None:
            return [model]
        since = int((time.time() - seconds) // BUCKET_SECONDS) * BUCKET_SECONDS
        stored, memory = self.tracker.collector.read_consistent(
            lambda: self.tracker.store.spans(since=since), lambda key: key[2] >= since)
        names = {m for m, _ in stored} | {key[0] for key, _ in memory}
        return sorted(name for name in names if not is_pinned_key(name))   # never judged

    def _reference(self, model: str, metrics: Mapping[str, Mapping[str, Any]]) -> str | None:
        if self.reference_resolver is not None:
            return self.reference_resolver(model)
        if len(metrics) < 2:
            return None
        return max(metrics, key=lambda v: (metrics[v]["requests"], v))

    # --- raising and resolving ----------------------------------------------------------------

    def raise_alert(self, model: str, version: str, rule: str, value: float | None,
                    threshold: float | None, message: str, severity: str = "warning",
                    details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Open the alert of (model, version, rule), or refresh the active one."""
        if severity not in SEVERITIES:
            raise InvalidArgument(f"severity must be one of {SEVERITIES}, got {severity!r}")
        if not isinstance(model, str) or not model or not isinstance(rule, str) or not rule:
            raise InvalidArgument("model and rule must be non-empty strings")
        return self.store.upsert_active(
            model=model, version=version or "", rule=rule, severity=severity, message=message,
            value=None if value is None else float(value),
            threshold=None if threshold is None else float(threshold),
            details=details or {}).as_dict()

    def record_event_alert(self, model: str, version: str | None, rule: str, message: str,
                           severity: str = "warning",
                           details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """An alert about an event rather than a metric (a rollback, a failed deployment)."""
        return self.raise_alert(model, version or "", rule, None, None, message, severity,
                                details)

    def record_health_failure(self, model: str, version: str, message: str,
                              details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.record_event_alert(model, version, HEALTH_RULE, message, "critical", details)

    def record_health_success(self, model: str, version: str) -> dict[str, Any] | None:
        return self.resolve(model, version, HEALTH_RULE)

    def record_automatic_rollback(self, model: str, version: str, message: str,
                                  details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The rollback layer reports that it rolled ``version`` back (critical)."""
        return self.record_event_alert(model, version, ROLLBACK_RULE, message, "critical",
                                       details)

    def resolve(self, model: str, version: str | None, rule: str) -> dict[str, Any] | None:
        """Resolve the active alert of (model, version, rule); None when none is active."""
        resolved = self.store.resolve(model=model, version=version or "", rule=rule)
        return None if resolved is None else resolved.as_dict()

    def resolve_alert(self, alert_id: int | str) -> dict[str, Any]:
        return self.store.resolve_id(_alert_id(alert_id)).as_dict()

    # --- reading ------------------------------------------------------------------------------

    def get_alert(self, alert_id: int | str) -> dict[str, Any]:
        return self.store.get(_alert_id(alert_id)).as_dict()

    def list_alerts(self, model: str | None = None, active: bool | None = None,
                    limit: int = 50, page_token: str | None = None
                    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; returns (alerts, next_page_token or None)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidArgument(f"limit must be an integer in 1..{MAX_PAGE}, got {limit!r}")
        before = None if page_token in (None, "") else _alert_id(page_token, "page_token")
        found = self.store.list(model=model, active=active, limit=limit + 1, before_id=before)
        page = found[:limit]
        return [a.as_dict() for a in page], (str(page[-1].id) if len(found) > limit else None)


def _alert_id(value: int | str, what: str = "alert id") -> int:
    if isinstance(value, bool):
        raise InvalidArgument(f"{what} must be a positive integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what} must be a positive integer, got {value!r}") from None
    if not 1 <= number <= _MAX_ID:
        raise InvalidArgument(f"{what} must be a positive integer, got {value!r}")
    return number
