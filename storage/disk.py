"""Full disks, recognised wherever storage writes (issue 21).

A write that fails for lack of space is a ``StorageFull`` (HTTP 507, code
``INSUFFICIENT_STORAGE``), never a 500, and it is remembered for ``FULL_MEMORY_S`` seconds so
that ``/readyz`` says writes fail even on a backend it cannot probe cheaply (PostgreSQL).
"""
from __future__ import annotations

import errno
import os
import tempfile
import time
from pathlib import Path

from errors import StorageFull

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# SQLite's and PostgreSQL's words (PostgreSQL's SQLSTATE for a full disk is 53100).
FULL_WORDS = ("database or disk is full", "No space left on device", "could not extend file",
              "53100")
FULL_MEMORY_S = 60.0
PROBE_BYTES = 64 * 1024

_last_full = 0.0


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in FULL_ERRNOS:
            return True
        if getattr(current, "pgcode", None) == "53100" or \
                any(word in str(current) for word in FULL_WORDS):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def storage_full(what: str) -> StorageFull:
    """The error to raise (and remember) when ``what`` failed for lack of space."""
    global _last_full
    _last_full = time.monotonic()
    return StorageFull(f"{what} failed: the server's storage is full; nothing was changed. "
                       "Free space, then retry", details={"reason": "storage_full"})


def recently_full() -> bool:
    return _last_full > 0 and time.monotonic() - _last_full < FULL_MEMORY_S


def can_write(directory: Path) -> bool:
    """Write (and remove) a small file in ``directory``: False when the disk is full."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix="probe-", suffix=".part") as f:
            f.write(os.urandom(PROBE_BYTES))
            f.flush()
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            return False
        raise
    return True
