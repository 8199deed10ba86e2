"""The background ticker: one daemon thread per process calling ``tick()`` about every second.

Every process may run one: ``DeploymentManager.tick`` guards each transition with the
deployment's revision, so ticks racing in several processes apply each step once. The thread
holds no rollout state; stopping it (or killing the process) loses nothing, and a restarted
process picks the rollouts up from the database. Errors are logged and the loop goes on: a
database that is briefly unreachable must not end the rollouts of a long-running server.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_REPEAT_LOG_S = 60.0


class Ticker:
    """Calls ``tick()`` every ``interval_s`` (±20% jitter, so that the tickers of several
    processes spread out instead of colliding on every beat)."""

    def __init__(self, tick: Callable[[], Any], interval_s: float = 0.5,
                 name: str = "deployment-ticker") -> None:
        self.tick = tick
        self.interval_s = interval_s
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_error: tuple[str, float] | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "Ticker":
        with self._lock:
            if not self.running:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the tick in progress (if any) ends, waiting up to ``timeout`` seconds."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s * random.uniform(0.8, 1.2)):
            try:
                self.tick()
            except Exception as exc:
                self._log(exc)

    def _log(self, exc: Exception) -> None:
        """The full traceback once; the same error again within a minute only at debug."""
        text = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if self._last_error and self._last_error[0] == text \
                and now - self._last_error[1] < _REPEAT_LOG_S:
            log.debug("tick failed again: %s", text)
            return
        self._last_error = (text, now)
        log.exception("deployment tick failed (the ticker keeps running)")
