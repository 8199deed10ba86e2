"""One watchdog thread per process that fires callbacks at deadlines.

Why not ``threading.Timer``: a thread per prediction costs more than a small ONNX run. Here
arming is a heap push under a lock, and the single thread sleeps until the earliest deadline.
A callback must be quick and must not raise (it only flips a flag, e.g. onnxruntime's
``RunOptions.terminate``).
"""
from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable


class Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._live: set[int] = set()   # armed, neither fired nor cancelled
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._pid = -1

    def armed(self, seconds: float, callback: Callable[[], None]) -> "_Armed":
        """Call ``callback`` if the block is still running after ``seconds``."""
        return _Armed(self, seconds, callback)

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # first use, or a fork left the thread behind
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="deadline-watchdog", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                due, entry_id, callback = self._heap[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(entry_id)
            callback()


class _Armed:
    """One deadline, armed for the ``with`` block: a plain context manager rather than a
    generator (it runs once per prediction; the generator's machinery cost more than the
    arming itself)."""

    __slots__ = ("_watchdog", "_seconds", "_callback", "_id")

    def __init__(self, watchdog: Watchdog, seconds: float, callback: Callable[[], None]) -> None:
        self._watchdog = watchdog
        self._seconds = seconds
        self._callback = callback
        self._id = -1

    def __enter__(self) -> None:
        watchdog = self._watchdog
        entry_id = self._id = next(watchdog._ids)
        with watchdog._cond:
            watchdog._ensure_thread()
            heap = watchdog._heap
            if len(heap) > 2 * len(watchdog._live) + 1024:   # mostly finished entries: compact
                heap[:] = [e for e in heap if e[1] in watchdog._live]
                heapq.heapify(heap)
            heapq.heappush(heap, (time.monotonic() + self._seconds, entry_id, self._callback))
            watchdog._live.add(entry_id)
            # Wake the watchdog only when this deadline is now its earliest: it sleeps until
            # the earliest one anyway. Waking it for every run (a thread switch and a turn of
            # the GIL per prediction) cost more than a small ONNX run (issue 14).
            if heap[0][1] == entry_id:
                watchdog._cond.notify()

    def __exit__(self, *exc_info: object) -> None:
        # No lock: one set removal is atomic, and the watchdog decides under its lock whether
        # an entry is live. If it took this one just before, the callback fires on a run that
        # has ended, which a callback must tolerate anyway (it only flips a flag).
        self._watchdog._live.discard(self._id)


WATCHDOG = Watchdog()
