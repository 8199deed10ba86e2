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
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._live: set[int] = set()   # armed, neither fired nor cancelled
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._pid = -1

    @contextmanager
    def armed(self, seconds: float, callback: Callable[[], None]) -> Iterator[None]:
        """Call ``callback`` if the block is still running after ``seconds``."""
        entry_id = next(self._ids)
        with self._cond:
            self._ensure_thread()
            heap = self._heap
            if len(heap) > 2 * len(self._live) + 1024:   # mostly finished entries: compact
                heap[:] = [e for e in heap if e[1] in self._live]
                heapq.heapify(heap)
            heapq.heappush(heap, (time.monotonic() + seconds, entry_id, callback))
            self._live.add(entry_id)
            # Wake the watchdog only when this deadline is now its earliest: it sleeps until
            # the earliest one anyway. Waking it for every run (a thread switch and a turn of
            # the GIL per prediction) cost more than a small ONNX run (issue 14).
            if heap[0][1] == entry_id:
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._live.discard(entry_id)

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


WATCHDOG = Watchdog()
