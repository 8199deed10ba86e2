"""How the benchmarks start this project's WSGI app: gunicorn (gthread) as shipped, or granian
(a WSGI server written in Rust), measured beside it and never shipped, to show how much of a
request's cost is the Python HTTP server rather than the registry (issue 14)."""
from __future__ import annotations

import sys

SERVERS = ("gunicorn", "granian")


def server_command(server: str, target: str, port: int, *, factory: bool = False,
                   workers: int = 1, threads: int = 8) -> list[str]:
    """The command serving ``target`` (``module:name``; with ``factory``, ``name()`` builds the
    app) on 127.0.0.1:``port``."""
    if server == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread",
                "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                f"{target}()" if factory else target]
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi",
                *(["--factory"] if factory else []), "--workers", str(workers),
                "--blocking-threads", str(threads), "--no-ws", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", target]
    raise ValueError(f"unknown server {server!r}: one of {SERVERS}")
