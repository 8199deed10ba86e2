"""Test support that needs no pytest: a real server process on a free port.

Benchmarks import it too, without importing ``conftest.py`` (and its fixtures and autouse
environment isolation).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def project_files() -> list[Path]:
    """The application's own modules: the top-level ones and every package's, never tests,
    benchmarks or a virtualenv inside the project."""
    files = [ROOT / f"{name}.py" for name in ("config", "errors", "defaults", "wiring", "main")]
    files.append(ROOT / "gunicorn.conf.py")
    for package in ("shared", "storage", "webhooks", "registry", "tracking", "models",
                    "deployment", "rollback", "api"):
        files += sorted((ROOT / package).rglob("*.py"))
    return [f for f in files if f.exists()]
PG_URL = os.environ.get("TEST_DATABASE_URL")


class LocalHTTPServer(ThreadingHTTPServer):
    """The test doubles' HTTP server (fake Gemini, webhook receiver, OTLP collector).

    ``ThreadingHTTPServer`` listens with a backlog of 5: sixteen clients connecting at once on a
    loaded machine get "connection reset by peer" before the accept loop catches up."""
    request_queue_size = 128
    daemon_threads = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``python api/app.py`` in a child process, on a free port of this machine."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "REGISTRY_DATA_DIR": str(data_dir), "PORT": str(self.port),
                    "HOST": "127.0.0.1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(data_dir) / "server.log"

    def start(self, timeout: float = 60.0) -> "LiveServer":
        # The log goes to a file: a pipe nobody reads fills up and blocks the server.
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "api/app.py"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc.wait()
                raise RuntimeError(f"server exited: {self.log()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=5).ok:
                    return self
            except requests.RequestException:   # not listening yet, or too busy to answer
                time.sleep(0.1)
        self.kill()   # never leave a child behind (nor an unwaited Popen)
        raise RuntimeError(f"server did not start in time: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
