"""Probe a version before it gets any traffic.

The check loads the version through the model loader (so a version that cannot load — a missing
or corrupted artifact, an unknown provider — fails here, not on users) and then calls its
provider's ``health()`` a few times: a minimal real call for Gemini, a run on the configured
``sample_input`` or on zeros shaped like the declared inputs for ONNX. Each probe has a timeout
of its own, enforced here because a hung backend must not hang the rollout controller.

The loaded instance stays in the loader's cache: that is the "loaded while the old version
still serves 100%" half of a blue-green deployment.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from config import Settings
from errors import InvalidArgument, RegistryError
from models.base_model import HealthResult, ModelProvider
from models.model_loader import ModelLoader


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    message: str
    probes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message, "probes": list(self.probes)}


def _probe(provider: ModelProvider, timeout_s: float) -> HealthResult:
    """One ``health()`` call in a daemon thread, abandoned after ``timeout_s``."""
    box: list[HealthResult] = []

    def run() -> None:
        try:
            box.append(provider.health())
        except Exception as exc:  # health() should not raise; a plug-in's might
            box.append(HealthResult(False, 0.0, f"{type(exc).__name__}: {exc}"))

    started = time.perf_counter()
    worker = threading.Thread(target=run, name="health-probe", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not box:
        return HealthResult(False, time.perf_counter() - started,
                            f"probe timed out after {timeout_s:g}s")
    return box[0]


class HealthChecker:
    """``probes`` calls, each within ``timeout_s``; healthy when ``required`` of them succeed
    (all by default: a version that fails one probe in three would fail users as often)."""

    def __init__(self, loader: ModelLoader, *, probes: int = 3, timeout_s: float = 10.0,
                 required: int | None = None, pause_s: float = 0.0) -> None:
        if probes < 1 or timeout_s <= 0:
            raise InvalidArgument("a health check needs at least one probe and a timeout > 0")
        self.loader = loader
        self.probes = probes
        self.timeout_s = timeout_s
        self.required = probes if required is None else max(1, min(required, probes))
        self.pause_s = pause_s

    @classmethod
    def for_settings(cls, loader: ModelLoader, settings: Settings) -> "HealthChecker":
        """The checker a deploy uses: each probe bounded by ``PROVIDER_TIMEOUT_S`` (so a deploy
        waits at most 3 × that for its check), and at least by the ONNX deadline, so the run a
        probe starts is stopped by that deadline by the time the probe is given up (issue 21)."""
        return cls(loader, timeout_s=max(settings.provider_timeout_s, settings.onnx_timeout_s))

    @property
    def budget_s(self) -> float:
        """The longest a check can take (the lease a controller holds while probing)."""
        return self.probes * (self.timeout_s + self.pause_s)

    def check(self, model: str, version: str) -> HealthReport:
        try:
            provider = self.loader.get(model, version)
        except RegistryError as exc:
            return HealthReport(False, f"{model}@{version} cannot be loaded: {exc.message}",
                                [{"ok": False, "latency": None, "message": exc.message,
                                  "stage": "load"}])
        results: list[dict[str, Any]] = []
        ok_count = 0
        for i in range(self.probes):
            if i and self.pause_s:
                time.sleep(self.pause_s)
            result = _probe(provider, self.timeout_s)
            ok_count += result.ok
            results.append({"ok": result.ok, "latency": result.latency,
                            "message": result.message})
            if ok_count >= self.required or (i + 1 - ok_count) > self.probes - self.required:
                break  # decided either way
        if ok_count >= self.required:
            return HealthReport(True, f"{ok_count}/{len(results)} probes of {model}@{version} "
                                      "succeeded", results)
        first_error = next((r["message"] for r in results if not r["ok"]), "")
        return HealthReport(False, f"{len(results) - ok_count}/{len(results)} probes of "
                                   f"{model}@{version} failed: {first_error}", results)
