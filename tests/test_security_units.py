"""Issue 21: the small pieces behind the attack tests, checked directly (fast)."""
from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from api.auth import is_loopback_name
from werkzeug.exceptions import RequestTimeout

from api.gunicorn_worker import (MAX_BUFFERED_BODY, _ChunkedEnd, _needed, _Paced,
                                 _set_io_deadline)
from config import Settings
from models.deadline import Watchdog
from storage.schema import as_utc


@pytest.mark.parametrize("threads, configured, limit", [(8, 64, 8), (8, 3, 3), (1, 64, 1)])
def test_the_inflight_limit_stays_below_the_server_threads(tmp_path, threads, configured,
                                                            limit):
    settings = Settings.from_env({"data_dir": tmp_path, "server_threads": threads,
                                  "max_inflight_per_model": configured})
    assert settings.inflight_limit == limit


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:5000", True), ("localhost", True), ("app.localhost:80", True),
    ("[::1]:5000", True), ("127.8.9.10", True), ("attacker.example", False),
    ("127.0.0.1.nip.io", False), ("192.0.2.2:5000", False), ("", False), (None, False),
    ("[::1", False)])
def test_loopback_names(host, ok):
    assert is_loopback_name(host) is ok


def test_times_beyond_utc_are_clamped_not_overflowed():
    low = as_utc(datetime.fromisoformat("0001-01-01T00:00:00+14:00"))
    high = as_utc(datetime.fromisoformat("9999-12-31T23:59:59-14:00"))
    assert low == datetime.min.replace(tzinfo=timezone.utc)
    assert high == datetime.max.replace(tzinfo=timezone.utc)


def test_the_watchdog_fires_late_blocks_only():
    dog, fired = Watchdog(), threading.Event()
    with dog.armed(0.05, fired.set):
        pass
    time.sleep(0.15)
    assert not fired.is_set()
    with dog.armed(0.05, fired.set):
        assert fired.wait(2)


def test_the_watchdog_wakes_for_an_earlier_deadline_and_stays_small():
    """Arming wakes the watchdog only for a new earliest deadline (issue 14): one armed after
    a long one must still fire on time, and finished entries do not pile up."""
    dog, fired, never = Watchdog(), threading.Event(), threading.Event()
    with dog.armed(60, never.set):
        time.sleep(0.05)                # the watchdog now sleeps until the 60 s deadline
        started = time.monotonic()
        with dog.armed(0.05, fired.set):
            assert fired.wait(2)
        assert time.monotonic() - started < 1.0
    for _ in range(5000):
        with dog.armed(60, never.set):
            pass
    assert len(dog._heap) <= 1024 + 2 + 1 and not never.is_set()


def test_the_worker_waits_for_the_whole_small_request():
    head = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
    assert _needed(bytearray(b"POST /x HTTP/1.1\r\n"), 0) is None
    assert _needed(bytearray(head), 0) == len(head) + 5
    big = head.replace(b"5", str(MAX_BUFFERED_BODY + 1).encode())
    assert _needed(bytearray(big), 0) == len(big)       # a thread reads it, under a deadline


CHUNKED_HEAD = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def _chunked_end(body: bytes) -> int:
    """Where the scanner says the request ends once all of it is there, fed a byte at a
    time; it must wait (ask for more than it has) at every byte before."""
    scan = _needed(bytearray(CHUNKED_HEAD), 0)
    assert isinstance(scan, _ChunkedEnd)
    data = bytearray(CHUNKED_HEAD)
    for byte in body[:-1]:
        data.append(byte)
        assert scan.find(data) > len(data), bytes(data)
    data.append(body[-1])
    return scan.find(data)


def test_the_worker_waits_for_the_whole_small_chunked_body():
    body = b"5;name=value\r\nhello\r\n3\r\n wo\r\n0\r\n\r\n"
    assert _chunked_end(body) == len(CHUNKED_HEAD) + len(body)
    with_trailers = b"2\r\nhi\r\n0\r\nX-Check: 1\r\n\r\n"
    assert _chunked_end(with_trailers) == len(CHUNKED_HEAD) + len(with_trailers)


def test_a_chunked_body_too_large_or_malformed_goes_to_a_thread_at_once():
    for body in (f"{MAX_BUFFERED_BODY + 1:x}\r\n".encode(),   # too large to buffer
                 b"zz\r\nhello\r\n",                         # not a size
                 b"-5\r\n",                                   # not a size either
                 b"5\r\nhelloXX",                              # no CRLF after the chunk
                 b"1" * 2000):                                  # endless size line
        data = bytearray(CHUNKED_HEAD + body)
        assert _needed(data, 0).find(data) == len(data), body[:40]


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_an_answer_produced_slowly_to_a_prompt_reader_is_never_cut_off(pair):
    """Only the time spent waiting on the client counts: a stream of tokens written far below
    the minimum rate, for well past the grace, to a client that reads at once."""
    server, client = pair
    paced = _Paced(server, None, grace_s=0.2, min_rate=10_000)
    received = bytearray()
    reader = threading.Thread(target=lambda: [received.extend(c) for c in iter(
        lambda: client.recv(4096), b"")])
    reader.start()
    for _ in range(12):   # 0.5 s of writing in all: more than twice the grace
        paced.sendall(b"token " * 2)
        time.sleep(0.04)
    server.shutdown(socket.SHUT_WR)
    reader.join(5)
    assert bytes(received) == b"token " * 24


def test_an_answer_nobody_reads_is_cut_off_after_the_grace(pair):
    server, _client = pair
    _set_io_deadline(server, 0.1)
    paced = _Paced(server, None, grace_s=0.2, min_rate=10_000)
    started = time.monotonic()
    with pytest.raises(OSError):   # the rate (ETIMEDOUT) or the kernel deadline (EAGAIN)
        for _ in range(10_000):
            paced.sendall(b"x" * 65536)
    assert time.monotonic() - started < 5


@pytest.fixture
def tcp_pair():
    """A loopback TCP connection with small buffers: (server side, client side)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    yield server, client
    server.close()
    client.close()


def test_one_large_write_to_a_slow_reader_is_cut_off(tcp_pair):
    """Bytes count once the kernel took them, not when handed over: a whole answer in one
    call (a JSON body of many MB) was once credited in full before the client read any."""
    server, client = tcp_pair
    _set_io_deadline(server, 0.5)   # a blocked write returns at least this often
    paced = _Paced(server, None, grace_s=0.3, min_rate=200_000)
    done = threading.Event()

    def read_slowly() -> None:   # 40 KB a second, a fifth of the minimum
        while not done.wait(0.05):
            try:
                client.recv(2048, socket.MSG_DONTWAIT)
            except OSError:
                pass

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    started = time.monotonic()
    try:
        with pytest.raises(OSError, match="slower than 200000 bytes a second"):
            paced.sendall(b"x" * (4 * 1024 * 1024))
    finally:
        done.set()
        reader.join(5)
    assert time.monotonic() - started < 2.5


def test_a_body_trickled_in_below_the_rate_is_a_408_and_a_prompt_one_is_read(pair):
    server, client = pair
    _set_io_deadline(server, 1)
    client.sendall(b"y" * 5000)
    prompt = SimpleNamespace(must_close=False)
    assert _Paced(server, prompt, grace_s=0.3, min_rate=1000).recv(5000) == b"y" * 5000
    assert not prompt.must_close
    req = SimpleNamespace(must_close=False)
    paced = _Paced(server, req, grace_s=0.3, min_rate=1000)

    done = threading.Event()

    def trickle() -> None:
        while not done.wait(0.05):
            client.send(b"z")

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        with pytest.raises(RequestTimeout, match="slower than 1000 bytes a second"):
            while True:
                paced.recv(1)
    finally:
        done.set()
        sender.join(5)
    assert req.must_close   # the 408 closes the connection: the body is half read


def test_a_body_that_stops_arriving_is_a_408(pair):
    server, _client = pair
    _set_io_deadline(server, 0.2)
    req = SimpleNamespace(must_close=False)
    with pytest.raises(RequestTimeout, match="stopped arriving"):
        _Paced(server, req, grace_s=5, min_rate=1000).recv(10)
    assert req.must_close


def test_a_read_under_its_callers_own_deadline_is_not_paced(pair):
    """gunicorn's graceful close drains with a socket timeout of its own and catches only
    socket errors: a 408 raised there would escape it."""
    server, _client = pair
    paced = _Paced(server, None, grace_s=0, min_rate=1)
    server.settimeout(0.05)
    with pytest.raises(TimeoutError):
        paced.recv(10)
