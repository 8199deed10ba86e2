"""Test support that needs no pytest: a real server process on a free port.

Benchmarks import it too, without importing ``conftest.py`` (and its fixtures and autouse
environment isolation).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

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
# Analysis settings for end-to-end rollouts that test routing, not latency: on a loaded 2-core
# machine a few dozen requests can show a p95 several times the stable's (37 ms against 10 ms
# once, which aborted a blue-green switch), so only a gross difference (1 s) may fail them.
LATENCY_TOLERANT = {"p95_tolerance_s": 1.0}


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


T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, every: float = 0.1) -> T:
    """``predicate()``'s first truthy value, polled every ``every`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float, *, what: str = "server",
               log: Callable[[], str] = lambda: "",
               ready: Callable[[requests.Response], Any] = lambda r: r.ok) -> None:
    """Poll ``url`` until its answer is ``ready``; fail at once, with the end of ``log()``,
    if ``proc`` exits first; kill ``proc`` if it is not ready in ``timeout`` seconds (never a
    child left behind). The one readiness loop of the tests' and benchmarks' servers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.wait()
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log()[-3000:]}")
        try:
            if ready(requests.get(url, timeout=5)):
                return
        except requests.RequestException:   # not listening yet, or too busy to answer
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait(10)
    raise RuntimeError(f"{what} did not get ready in {timeout:.0f} s: {log()[-3000:]}")


def stop_process(proc: subprocess.Popen | None, grace_s: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``grace_s``; its exit code
    (None if it never started)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


class ProductionServer:
    """The production command, ``gunicorn -c gunicorn.conf.py 'api.app:create_app()'``, in a
    child process on a free port of this machine, with its own data, metrics directory and
    control socket under ``base`` (named ``name``). ``env`` adds to (or overrides) this
    process's environment, without the variables named in ``drop``."""

    def __init__(self, base: Path, name: str, env: dict[str, str],
                 drop: tuple[str, ...] = ()) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / f"{name}.log"
        self.prom_dir = base / f"{name}-prometheus"
        inherited = {k: v for k, v in os.environ.items() if k not in drop}
        self.env = {**inherited, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "REGISTRY_DATA_DIR": str(base / f"{name}-data"),
                    "PROMETHEUS_MULTIPROC_DIR": str(self.prom_dir),
                    # a short path: a unix socket's is limited to about 100 bytes
                    "GUNICORN_CONTROL_SOCKET": str(Path(tempfile.gettempdir())
                                                   / f"mr-test-{self.port}.ctl"),
                    "NO_PROXY": "127.0.0.1,localhost", **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ProductionServer":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                 "api.app:create_app()"], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 40.0) -> "ProductionServer":
        """Ready when /readyz answers and every worker booted (a gthread worker accepts
        connections only once its app is built; the master listens at once)."""
        workers = int(self.env.get("WEB_CONCURRENCY", "1"))
        assert self.proc is not None, "start() first"
        wait_ready(self.url + "/readyz", self.proc, timeout, what=self.name, log=self.log,
                   ready=lambda r: r.ok and self.log().count("Booting worker") >= workers)
        return self

    def stop(self) -> int | None:
        """SIGTERM (workers finish, flush and exit), SIGKILL after 30 s; the exit code."""
        return stop_process(self.proc, 30)


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
        wait_ready(self.url + "/healthz", self.proc, timeout, log=self.log)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)
