"""How the benchmarks start this project's WSGI app: gunicorn with the shipped worker
(``api/gunicorn_worker.py``, gthread plus the slow-client protection), or granian (a WSGI server
written in Rust), measured beside it and never shipped, to show how much of a request's cost is
the Python HTTP server rather than the registry (issue 14); and what a server's CPU time is."""
from __future__ import annotations

import os
import sys
from pathlib import Path

SERVERS = ("gunicorn", "granian")
SHIPPED_WORKER = "api.gunicorn_worker.HeadFirstWorker"   # gunicorn.conf.py's worker_class


def server_command(server: str, target: str, port: int, *, factory: bool = False,
                   workers: int = 1, threads: int = 8) -> list[str]:
    """The command serving ``target`` (``module:name``; with ``factory``, ``name()`` builds the
    app) on 127.0.0.1:``port``."""
    if server == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", SHIPPED_WORKER,
                "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                f"{target}()" if factory else target]
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi",
                *(["--factory"] if factory else []), "--workers", str(workers),
                "--blocking-threads", str(threads), "--no-ws", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", target]
    raise ValueError(f"unknown server {server!r}: one of {SERVERS}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (Linux /proc), else 0."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(c)) for c in children)
