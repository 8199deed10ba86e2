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
            "avg_latency": m["avg_latency"], "errors": m.get("errors", {})}


def window_metrics(tracker: PerformanceTracker, model: str, candidate: str,
                   stable: str | None, elapsed_s: float, settings: AnalysisSettings
                   ) -> tuple[float, dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """(window, candidate metrics, stable metrics or None, the evidence's common part) of the
    step so far."""
    window = max(1.0, float(elapsed_s))
    found = tracker.get_metrics(model, window=window)
    empty = {"requests": 0, "failures": 0, "error_rate": None, "p95_latency": None,
             "avg_latency": None, "errors": {}}
    c = found.get(candidate) or empty
    s = (found.get(stable) or empty) if stable is not None and stable != candidate else None
    evidence: dict[str, Any] = {
        "window_s": round(window, 3), "elapsed_s": round(float(elapsed_s), 3),
        "candidate": _summary(candidate, c), "stable": _summary(stable, s),
        "settings": settings.model_dump(),
    }
    return window, c, s, evidence
