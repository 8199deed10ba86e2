"""What a step's analysis answers (a verdict with its evidence) and the metrics both judges
start from: the threshold rules (``deployment.analysis``) and the statistical judge
(``deployment.judge``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployment.deployment_strategy import AnalysisSettings
from tracking.performance_tracker import PerformanceTracker

PASS = "pass"
FAIL = "fail"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    threshold: float | None
    ok: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value,
                               "threshold": self.threshold, "ok": self.ok}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Verdict:
    result: str                       # pass | fail | inconclusive
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    failed: Check | None = None       # the first failing check, for the alert

    def as_dict(self) -> dict[str, Any]:
        return {"result": self.result, "reason": self.reason, "evidence": self.evidence}


def _summary(version: str | None, m: dict[str, Any] | None) -> dict[str, Any] | None:
    if version is None or m is None:
        return None
    return {"version": version, "requests": m["requests"], "failures": m["failures"],
            "error_rate": m["error_rate"], "p95_latency": m["p95_latency"],
            "avg_latency": m["avg_latency"], "errors": m.get("errors", {}),
            "cost_usd": m.get("cost_usd", 0.0),
            "cost_per_request_usd": m.get("cost_per_request_usd")}


def window_metrics(tracker: PerformanceTracker, model: str, candidate: str,
                   stable: str | None, elapsed_s: float, settings: AnalysisSettings
                   ) -> tuple[float, dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """(window, candidate metrics, stable metrics or None, the evidence's common part) of the
    step so far."""
    window = max(1.0, float(elapsed_s))
    found = tracker.get_metrics(model, window=window)
    empty = {"requests": 0, "failures": 0, "error_rate": None, "p95_latency": None,
             "avg_latency": None, "errors": {}, "cost_usd": 0.0, "cost_per_request_usd": None}
    c = found.get(candidate) or empty
    s = (found.get(stable) or empty) if stable is not None and stable != candidate else None
    evidence: dict[str, Any] = {
        "window_s": round(window, 3), "elapsed_s": round(float(elapsed_s), 3),
        "candidate": _summary(candidate, c), "stable": _summary(stable, s),
        "settings": settings.model_dump(),
    }
    return window, c, s, evidence


def cost_check(tracker: PerformanceTracker, model: str, c: dict[str, Any],
                s: dict[str, Any] | None, stable: str | None, settings: AnalysisSettings,
                window: float, evidence: dict[str, Any]) -> Check | None:
    """Cost per request against the stable version's (the rules: ``deployment.analysis``);
    None when no cost gate is set or there is no reference yet (then ``evidence`` says why)."""
    if settings.max_cost_ratio is None or stable is None or s is None:
        return None
    reference, reference_window = s, window
    if s["requests"] < settings.min_requests:
        reference_window = max(window, settings.cost_baseline_s)
        reference = tracker.get_metrics(model, stable, window=reference_window)
    base = reference.get("cost_per_request_usd")
    mine = c.get("cost_per_request_usd")
    evidence["cost"] = {"candidate_per_request_usd": mine, "stable_per_request_usd": base,
                        "stable_requests": reference["requests"],
                        "stable_window_s": round(reference_window, 3)}
    if reference["requests"] < settings.min_requests or not base or mine is None:
        return None
    ratio = mine / base
    evidence["cost"]["ratio"] = ratio
    return Check("cost_ratio", ratio, settings.max_cost_ratio, ratio <= settings.max_cost_ratio,
                 f"${mine:.6g} vs stable ${base:.6g} per request")
