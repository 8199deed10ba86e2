"""Issue 21: the small pieces behind the attack tests, checked directly (fast)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest

from api.auth import is_loopback_name
from api.gunicorn_worker import MAX_BUFFERED_BODY, _ChunkedEnd, _needed
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
