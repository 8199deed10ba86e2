"""``scipy.stats``, imported on first use.

Importing it takes about a second, a third of a server's start-up, and only the statistical
judge and experiments' verdicts need it; a process that never analyses a canary statistically
never pays for it."""
from __future__ import annotations

from types import ModuleType


def stats() -> ModuleType:
    import scipy.stats   # noqa: PLC0415 — deferred on purpose (see the module docstring)
    return scipy.stats
