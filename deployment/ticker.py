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


class ErrorLog:
    """Logs a failure's traceback once, and the same failure (same key and message) again only
    at debug level for a minute: a tick every half second must not flood the log."""

    def __init__(self, logger: logging.Logger, every_s: float = _REPEAT_LOG_S) -> None:
        self.logger = logger
        self.every_s = every_s
        self._last: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def exception(self, key: str, exc: BaseException, message: str, *args: Any) -> None:
        text = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            repeat = last is not None and last[0] == text and now - last[1] < self.every_s
            if not repeat:
                self._last[key] = (text, now)
        if repeat:
            self.logger.debug(message + " (again): %s", *args, text)
        else:
            self.logger.error(message, *args, exc_info=exc)


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
        self._errors = ErrorLog(log)

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
        jitter = random.Random()   # its own generator: a ticker never moves the global one
        while not self._stop.wait(self.interval_s * jitter.uniform(0.8, 1.2)):
            try:
                self.tick()
            except Exception as exc:
                self._errors.exception("tick", exc, "deployment tick failed (the ticker keeps "
                                                    "running)")
