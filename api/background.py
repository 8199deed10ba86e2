"""The server's background duties, on one ticker thread per process.

Every beat (~0.5 s) rollouts advance (``deployments.tick``); every 2 s the live versions are
judged for automatic rollback; every 5 s the alert rules and budgets are evaluated; every hour
old metrics are pruned; every beat, due webhook deliveries are leased and handed to the sender's
workers; every second this process's shadow pairs are stored and due shadows end; every 2 s
due A/B experiments end with their verdict. Each duty is safe when several processes (gunicorn
workers, several servers) run it at once, and one duty failing does not stop the others.
"""
from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from api.services import EXTENSION_KEY
from deployment.ticker import ErrorLog, Ticker
from wiring import Services

log = logging.getLogger(__name__)
TICKER_KEY = "background_ticker"


class Duties:
    def __init__(self, svc: Services) -> None:
        self._errors = ErrorLog(log)
        # (name, what, every seconds); 0 = every beat
        self._duties: list[tuple[str, Callable[[], Any], float]] = [
            ("rollouts", svc.deployments.tick, 0),
            ("auto-rollback", svc.rollbacks.watch, 2.0),
            ("alerts", svc.alerts.evaluate, 5.0),
            ("budgets", svc.budgets.evaluate, 5.0),
            ("retention", svc.tracker.prune, 3600.0),
            ("webhooks", svc.webhook_sender.tick, 0),
            # issue 19: store the mirrored pairs, end due shadows, see new ones; end due
            # experiments with their verdict
            ("shadows", svc.shadows.tick, 1.0),
            ("experiments", svc.experiments.tick, 2.0),
        ]
        self._due = {name: 0.0 for name, _, _ in self._duties}

    def __call__(self) -> None:
        now = time.monotonic()
        for name, duty, every in self._duties:
            if now < self._due[name]:
                continue
            self._due[name] = now + every
            try:
                duty()
            except Exception as exc:  # logged; the other duties still run
                self._errors.exception(name, exc, "background duty %r failed", name)


def start(app: Flask) -> Ticker:
    """Start this process's background ticker (stopped at interpreter exit)."""
    ticker = app.extensions.get(TICKER_KEY)
    if ticker is None:
        ticker = Ticker(Duties(app.extensions[EXTENSION_KEY]),
                        interval_s=float(app.config.get("TICKER_INTERVAL_S", 0.5)),
                        name="background-ticker")
        app.extensions[TICKER_KEY] = ticker
        atexit.register(ticker.stop)
    return ticker.start()
