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
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from models.onnx_examples import linear_model
from tests.support import ProductionServer, wait_until

pytestmark = pytest.mark.slow

THREADS = 4
HEAD_TIMEOUT_S = 3
IO_TIMEOUT_S = 2
MIN_RATE = 64 * 1024
BIG = 32 * 1024 * 1024   # the large artifact: far beyond any socket buffer


def _gunicorn(base: Path) -> ProductionServer:
    """The production command, one worker with few threads (the easiest to starve)."""
    return ProductionServer(base, "gunicorn", {
        "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": str(THREADS),
        "GUNICORN_HEAD_TIMEOUT": str(HEAD_TIMEOUT_S), "GUNICORN_IO_TIMEOUT": str(IO_TIMEOUT_S),
        "GUNICORN_MIN_RATE": str(MIN_RATE)})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    g = _gunicorn(tmp_path_factory.mktemp("slow-clients")).start().wait_ready()
    url = g.url
    requests.post(f"{url}/api/models/register", json={"name": "m"}).raise_for_status()
    requests.post(f"{url}/api/models/m/versions/register",
                  json={"version": "1.0.0", "provider": "onnx"}).raise_for_status()
    requests.put(f"{url}/api/models/m/versions/1.0.0/artifact",
                 data=linear_model()).raise_for_status()
    requests.post(f"{url}/api/models/m/deploy", json={"version": "1.0.0"}).raise_for_status()
    requests.post(f"{url}/api/models/m/versions/register",
                  json={"version": "9.0.0", "provider": "onnx"}).raise_for_status()
    requests.put(f"{url}/api/models/m/versions/9.0.0/artifact",
                 data=os.urandom(BIG)).raise_for_status()
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
    first: each of THREADS connections is answered once, then starts an upload too large for
    the event loop to buffer (so a thread reads it) and stalls. Every thread is then blocked in
    ``recv`` until the deadline frees it: the client gets a 408 (before, werkzeug's 400 for a
    client that disconnected, which blamed the request) and the connection is closed."""
    requests.post(f"{server.url}/api/models/m/versions/register",
                  json={"version": "9.2.0", "provider": "onnx"}).raise_for_status()
    body = b'{"input": [[1, 2, 3, 4]]}'
    first = (b"POST /api/models/m/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Type: application/json\r\n"
             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    stalled = (b"PUT /api/models/m/versions/9.2.0/artifact HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/octet-stream\r\n"
               b"Content-Length: " + str(3 * 1024 * 1024).encode() + b"\r\n\r\n" + b"x" * 1000)
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
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
            assert b'"REQUEST_TIMEOUT"' in answer
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


def _downloaders(port: int) -> list[socket.socket]:
    """THREADS clients that ask for the large artifact, each with a tiny receive buffer."""
    readers = []
    for _ in range(THREADS):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # fills at once
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /api/models/m/versions/9.0.0/artifact HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\n\r\n")
        readers.append(s)
    return readers


def _cut_offs(server: ProductionServer) -> int:
    """How many answers the server has cut off so far (one warning line each)."""
    return server.log().count("answer cut off, connection reset")


def _cut_short(s: socket.socket) -> None:
    """The rest of a download, which must end (the server closed) before the whole artifact."""
    s.settimeout(10)
    received = 0
    try:
        while chunk := s.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        pass
    assert received < BIG


def test_a_download_nobody_reads_frees_its_thread(server):
    """An artifact larger than the socket buffers, asked for by clients that never read it. With
    gunicorn's ``sendfile`` the thread waited for the socket with no deadline at all; written
    in chunks instead, each write has the I/O deadline."""
    before = _cut_offs(server)
    readers = _downloaders(server.port)
    try:
        # Every thread is held until a write times out (a few deadlines: the stalled writes
        # still move a few bytes at first); before, never.
        wait_until(lambda: _cut_offs(server) >= before + THREADS, timeout=8 * IO_TIMEOUT_S)
        _predict_quickly(server.url)
        for s in readers:   # each answer was cut short and its connection closed
            _cut_short(s)
    finally:
        for s in readers:
            s.close()


def test_a_download_read_a_trickle_at_a_time_frees_its_thread(server):
    """Clients that read their large answer, but slower than GUNICORN_MIN_RATE: 16 KiB a second
    against 64. Each write completes within the I/O deadline, so before, a thread was held for
    the whole download (32 MB at that pace: over half an hour); now the time spent waiting on
    the client outgrows its budget within seconds, and the answer is cut off."""
    before = _cut_offs(server)
    readers = _downloaders(server.port)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.25):
            for s in readers:
                try:
                    s.recv(4096, socket.MSG_DONTWAIT)
                except OSError:   # nothing there yet, or cut off
                    pass

    reader = threading.Thread(target=trickle, daemon=True)
    reader.start()
    try:
        wait_until(lambda: _cut_offs(server) >= before + THREADS, timeout=30)
        _predict_quickly(server.url)
    finally:
        stop.set()
        reader.join(10)
    try:
        for s in readers:
            _cut_short(s)
        assert "Socket error processing request" not in server.log()   # one line, no traceback
    finally:
        for s in readers:
            s.close()


def test_a_large_body_trickled_in_gets_a_408(server):
    """A body over the 2 MiB the event loop buffers is read by a thread; sent at 5 KiB a second
    against GUNICORN_MIN_RATE's 64, each read still gets bytes within the I/O deadline, so
    before, the upload held its thread for ten minutes. Now it is refused once the time spent
    waiting on it outgrows its budget."""
    size = 3 * 1024 * 1024
    requests.post(f"{server.url}/api/models/m/versions/register",
                  json={"version": "9.1.0", "provider": "onnx"}).raise_for_status()
    s = _open(server.port, b"PUT /api/models/m/versions/9.1.0/artifact HTTP/1.1\r\n"
                           b"Host: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                           b"Content-Length: " + str(size).encode() + b"\r\n\r\n")
    started = time.monotonic()
    answer = b""
    try:
        s.settimeout(0.2)
        while time.monotonic() - started < 60:
            try:
                s.sendall(b"x" * 1024)
            except OSError:
                pass
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            answer += chunk
            if not chunk:
                break
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b'"REQUEST_TIMEOUT"' in answer and b"\r\nconnection: close\r\n" in answer.lower()
    assert time.monotonic() - started < 20
    _predict_quickly(server.url)
    # nothing was stored
    assert requests.get(f"{server.url}/api/models/m/versions/9.1.0/artifact").status_code == 404
