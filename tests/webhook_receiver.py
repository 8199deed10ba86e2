"""A real HTTP receiver for webhook tests: ``http.server`` on 127.0.0.1, one thread per request.

Each path answers from a script (a list of statuses, the last one repeating) or hangs until
released; every request is recorded with its headers and raw body.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support import LocalHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Script:
    statuses: list[int] = field(default_factory=lambda: [200])
    headers: dict[str, str] = field(default_factory=dict)
    hang: threading.Event | None = None     # set: answer; unset: hold the request


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, Script] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:   # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append(Received(self.path, dict(self.headers), body,
                                                      time.monotonic()))
                    script = receiver.scripts.setdefault(self.path, Script())
                    status = script.statuses.pop(0) if len(script.statuses) > 1 \
                        else script.statuses[0]
                if script.hang is not None:
                    script.hang.wait(30)
                try:
                    self.send_response(status)
                    for key, value in script.headers.items():
                        self.send_header(key, value)
                    payload = f'{{"status": {status}}}'.encode()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass    # the sender gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = LocalHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                        daemon=True)   # stops within 20 ms of shutdown()

    def script(self, path: str, *statuses: int, headers: dict[str, str] | None = None,
               hang: threading.Event | None = None) -> str:
        with self.lock:
            self.scripts[path] = Script(list(statuses) or [200], headers or {}, hang)
        return self.url + path

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for script in self.scripts.values():
            if script.hang is not None:
                script.hang.set()
        self.server.shutdown()
        self.server.server_close()
