"""Issue 21, finding 4: slow clients cannot hold the workers, under the shipped production
configuration (``gunicorn -c gunicorn.conf.py``, whose worker is api/gunicorn_worker.py).

The attack: many sockets that send a request line and nothing more (and a few that send a
head announcing a body that never comes). Before, with the stock gthread worker, each held a
thread for as long as the client wished: predictions froze. Now heads and small bodies are
collected by the event loop and the connections are closed at the head deadline.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from models.onnx_examples import linear_model
from tests.support import ROOT, free_port, wait_ready, wait_until

pytestmark = pytest.mark.slow

THREADS = 4
HEAD_TIMEOUT_S = 3
IO_TIMEOUT_S = 2


class Gunicorn:
    """The production command, one worker with few threads (the easiest to starve)."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "gunicorn.log"
        self.env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": str(THREADS),
                    "GUNICORN_HEAD_TIMEOUT": str(HEAD_TIMEOUT_S),
                    "GUNICORN_IO_TIMEOUT": str(IO_TIMEOUT_S),
                    "REGISTRY_DATA_DIR": str(base / "data"),
                    "PROMETHEUS_MULTIPROC_DIR": str(base / "prometheus"),
                    "GUNICORN_CONTROL_SOCKET": str(base / "gunicorn.ctl"),
                    "NO_PROXY": "127.0.0.1,localhost"}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 40.0) -> "Gunicorn":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                 "api.app:create_app()"], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT)
        wait_ready(self.url + "/readyz", self.proc, timeout, what="gunicorn",
                   log=lambda: self.log_path.read_text(errors="replace"))
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    g = Gunicorn(tmp_path_factory.mktemp("slow-clients")).start()
    url = g.url
    requests.post(f"{url}/api/models/register", json={"name": "m"}).raise_for_status()
    requests.post(f"{url}/api/models/m/versions/register",
                  json={"version": "1.0.0", "provider": "onnx"}).raise_for_status()
    requests.put(f"{url}/api/models/m/versions/1.0.0/artifact",
                 data=linear_model()).raise_for_status()
    requests.post(f"{url}/api/models/m/deploy", json={"version": "1.0.0"}).raise_for_status()
    yield g
    g.stop()


def _open(port: int, payload: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(payload)
    return s


def _answer(s: socket.socket) -> bytes:
    """One whole answer (head and a ``Content-Length`` body) read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"connection closed before a whole head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head).group(1))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "connection closed before a whole body"
        body += chunk
    assert len(body) == length, "more than one answer"
    return head + b"\r\n\r\n" + body


def _predict_quickly(url: str) -> None:
    started = time.monotonic()
    r = requests.post(f"{url}/api/models/m/predict", json={"input": [[1, 2, 3, 4]]}, timeout=5)
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 2.0


def test_request_lines_alone_do_not_hold_the_threads(server):
    attackers = [_open(server.port, b"POST /api/models/m/predict HTTP/1.1\r\n")
                 for _ in range(12 * THREADS)]
    # and a few that announce a body and never send it
    attackers += [_open(server.port, b"POST /api/models/m/predict HTTP/1.1\r\nHost: x\r\n"
                                     b"Content-Type: application/json\r\n"
                                     b"Content-Length: 1000\r\n\r\n{")
                  for _ in range(2 * THREADS)]
    try:
        time.sleep(0.5)   # every attacking socket is readable and waiting
        for _ in range(10):
            _predict_quickly(server.url)
        # The head deadline closes them: the server answers nothing and hangs up.
        for s in attackers:
            s.settimeout(HEAD_TIMEOUT_S + 5)
            assert s.recv(1024) == b""
        _predict_quickly(server.url)
    finally:
        for s in attackers:
            s.close()


def test_a_trickled_request_is_still_served_within_the_deadline(server):
    """Head-first collection must not break honest, slow-ish clients."""
    body = b'{"input": [[1, 2, 3, 4]]}'
    request = (b"POST /api/models/m/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nConnection: close\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        for i in range(0, len(request), 16):
            s.sendall(request[i:i + 16])
            time.sleep(0.02)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 200") and b'"version":"1.0.0"' in answer.replace(b" ", b"")


def test_a_stalled_body_on_a_kept_alive_connection_frees_its_thread(server):
    """The I/O deadline holds for every request of a kept-alive connection, not only its
    first: each of THREADS connections is answered once, then starts a chunked body (read by a
    thread, not the event loop) and stalls. Every thread is then blocked in ``recv`` until the
    deadline frees it and the connection is closed."""
    body = b'{"input": [[1, 2, 3, 4]]}'
    first = (b"POST /api/models/m/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Type: application/json\r\n"
             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    stalled = (b"POST /api/models/m/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"10\r\n{\"input\": [[1, 2")
    sockets = [_open(server.port, first) for _ in range(THREADS)]
    try:
        for s in sockets:
            answer = _answer(s)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            assert b"connection: close" not in answer.lower()
        started = time.monotonic()
        for s in sockets:
            s.sendall(stalled)
        for s in sockets:
            s.settimeout(IO_TIMEOUT_S + 10)
            while s.recv(65536):   # whatever the server says before hanging up
                pass
        assert time.monotonic() - started < IO_TIMEOUT_S + 8
        _predict_quickly(server.url)
    finally:
        for s in sockets:
            s.close()


def test_clients_that_keep_their_end_open_after_the_last_answer_do_not_stall_the_worker(server):
    """Every answer that ends a connection is followed by a graceful close, which waits for the
    client to close too. Twenty clients that never do: before, each stalled the worker's event
    loop for 2 s (an honest request waited 40 s); now they linger without blocking it."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    lingering = [_open(server.port, request) for _ in range(20)]
    try:
        time.sleep(0.3)   # all answered, all in their graceful close
        for _ in range(5):
            _predict_quickly(server.url)
        for s in lingering:   # each got its whole answer, then the server's FIN
            assert _answer(s).startswith(b"HTTP/1.1 200")
            s.settimeout(5)
            assert s.recv(1024) == b""
    finally:
        for s in lingering:
            s.close()


def test_chunked_bodies_trickled_a_byte_at_a_time_do_not_hold_the_threads(server):
    """A chunked body is collected by the event loop too, under the head deadline: before, a
    thread read it, waiting up to the I/O deadline per byte, so a client sending one byte
    more often than that held the thread for ever."""
    head = (b"POST /api/models/m/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1\r\n{\r\n")
    attackers = [_open(server.port, head) for _ in range(3 * THREADS)]
    stop = threading.Event()

    def trickle() -> None:   # one byte of JSON padding per socket, four times per I/O deadline
        while not stop.wait(IO_TIMEOUT_S / 4):
            for s in attackers:
                try:
                    s.sendall(b"1\r\n \r\n")
                except OSError:
                    pass

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(IO_TIMEOUT_S * 0.75)   # before the head deadline: every body still "arriving"
        for _ in range(5):
            _predict_quickly(server.url)
        for s in attackers:   # the head deadline ends each: closed, or refused with an answer
            s.settimeout(HEAD_TIMEOUT_S + 5)
            try:
                while chunk := s.recv(65536):
                    assert not chunk.startswith(b"HTTP/1.1 200"), chunk[:200]
            except ConnectionResetError:
                pass
    finally:
        stop.set()
        trickler.join(10)
        for s in attackers:
            s.close()


def test_a_download_nobody_reads_frees_its_thread(server):
    """An artifact larger than the socket buffers, asked for by clients that never read it. With
    gunicorn's ``sendfile`` the thread waited for the socket with no deadline at all; written
    in chunks instead, each write has the I/O deadline."""
    url = server.url
    requests.post(f"{url}/api/models/m/versions/register",
                  json={"version": "9.0.0", "provider": "onnx"}).raise_for_status()
    requests.put(f"{url}/api/models/m/versions/9.0.0/artifact",
                 data=os.urandom(32 * 1024 * 1024)).raise_for_status()
    readers = []
    for _ in range(THREADS):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # fills at once
        s.connect(("127.0.0.1", server.port))
        s.sendall(b"GET /api/models/m/versions/9.0.0/artifact HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\n\r\n")
        readers.append(s)
    def served() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        # Every thread is held until a write times out (a few deadlines: the stalled writes
        # still move a few bytes at first); before, never.
        wait_until(served, timeout=8 * IO_TIMEOUT_S)
        _predict_quickly(url)
        for s in readers:   # each answer was cut short and its connection closed
            s.settimeout(10)
            received = 0
            while chunk := s.recv(1 << 20):
                received += len(chunk)
            assert received < 32 * 1024 * 1024
    finally:
        for s in readers:
            s.close()
