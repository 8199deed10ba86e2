"""The production worker: gunicorn's ``gthread`` worker that slow clients cannot hold.

Why: a ``gthread`` worker hands a connection to one of its threads as soon as the socket is
readable. A client that sends a request line and then nothing (or one byte a minute) keeps
that thread blocked in ``recv`` with no deadline; a few dozen such sockets hold every thread
of every worker and no prediction is served (issue 21, finding 4).

What this worker changes:

* The request head (request line and headers, up to ``MAX_HEAD_BYTES``) and a body of up to
  ``MAX_BUFFERED_BODY`` (of declared ``Content-Length``, or chunked) are read by the worker's
  event loop, without a thread, from non-blocking sockets. Only a connection whose request is
  complete is handed to a thread (a larger body is read by the thread, under the deadline
  below). A request not complete within ``head_timeout_s``
  seconds of the connection (or of the previous answer, on a kept-alive connection) is
  closed. Thousands of idle or trickling sockets therefore cost a file descriptor each,
  never a thread (``worker_connections`` bounds them per worker).
* Once a thread has the connection, every ``recv``/``send`` on it (the body, the answer) has a
  kernel deadline of ``io_timeout_s`` seconds (``SO_RCVTIMEO``/``SO_SNDTIMEO``, set once per
  connection: they survive gunicorn switching the socket between blocking and non-blocking
  mode for every kept-alive request): a stalled body or a client that stops reading the answer
  frees the thread after that long.
* The deadline above bounds each read or write, not a whole body or answer: a client that moves
  a few bytes within each deadline (reading a large answer, or sending a large body, a trickle
  at a time) would hold the thread for as long as it liked. So the time a thread spends blocked
  on its client during one request may reach ``io_timeout_s`` plus a second per ``min_rate``
  bytes moved, each way (``_Paced``); beyond, a body read answers 408 and an answer is cut off.
  Time the application spends computing is not counted: a slow stream of tokens is not a slow
  client.
* A connection that is done (the answer said ``Connection: close``, or the client's did) is
  closed gracefully (a FIN, then what the client still sends is drained until it closes, for at
  most ``LINGER_S``, so that unread bytes do not make the kernel answer with a reset that
  truncates the last answer: RFC 9112, section 9.6) by the event loop, without blocking.
  gunicorn 27 lingers in a blocking ``recv`` on the event loop's own thread: each client that
  kept its end open after its answer stalled every request of the worker for 2 s (twenty of
  them, for 40 s).

Chosen over a front proxy because it ships inside the one configuration the README runs
(``gunicorn -c gunicorn.conf.py``), with nothing else to install, and the slow-client test
runs against exactly that. TLS is left to gunicorn's own path (no head buffering): terminate
TLS in a proxy, as the README's Security section says.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import re
import selectors
import socket
import struct
import termios
import threading
import time
from collections import deque
from functools import partial
from typing import Any, NoReturn

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.exceptions import RequestTimeout

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024   # beyond gunicorn's own limits: its parser then answers 400/431
MAX_BUFFERED_BODY = 2 * 1024 * 1024   # above MAX_BODY_BYTES' default: the app answers 413
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,12})[ \t]*\r\n", re.I)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked[ \t]*\r\n", re.I)
MAX_CHUNK_LINE = 1024   # a chunk-size line (hex size and extensions) longer than this is refused
LINGER_S = 2.0                 # gunicorn's own graceful-close linger and drain cap
LINGER_MAX_DRAIN = 64 * 1024
_SEND_SLICE = 256 * 1024   # the most written between two checks of an answer's rate
_PROMPT_S = 0.05   # a socket call returning within this did not wait on the client


def _needed(data: bytearray, searched: int) -> "int | _ChunkedEnd | None":
    """How many bytes the request needs before a thread takes it, once its head is complete
    (head, plus a body of declared length small enough to buffer), or for a chunked body the
    scanner that finds its end; None while the head is still arriving. ``searched``: bytes
    already known not to hold the head's end."""
    end = data.find(HEAD_END, max(0, searched - len(HEAD_END) + 1))
    if end < 0:
        return 0 if len(data) > MAX_HEAD_BYTES else None
    body = end + len(HEAD_END)
    if _CHUNKED.search(data, 0, end + 2):
        return _ChunkedEnd(body)
    match = _CONTENT_LENGTH.search(data, 0, end + 2)
    length = int(match.group(1)) if match else 0
    return body + (length if length <= MAX_BUFFERED_BODY else 0)


class _ChunkedEnd:
    """Where a chunked body ends, found as its bytes arrive: each call goes on from the last
    complete chunk, so a body sent a byte at a time is not scanned again and again.

    Why buffer it: a thread reading a chunked body waits ``io_timeout_s`` per ``recv``, so a
    client trickling a byte every few seconds would hold the thread for as long as it liked."""

    def __init__(self, body: int) -> None:
        self.body = body
        self.pos = body            # the next chunk's size line, or the trailers
        self.trailers = False

    def find(self, data: bytearray) -> int:
        """The request's length once its last chunk and trailers are in ``data``; more than
        ``len(data)`` while they are arriving. ``len(data)`` at once (a thread takes the
        connection and gunicorn's parser reads or refuses the rest) for a body over
        ``MAX_BUFFERED_BODY`` or malformed framing."""
        waiting = len(data) + 1
        while True:
            if self.pos - self.body > MAX_BUFFERED_BODY:
                return len(data)
            if self.trailers:
                if data[self.pos:self.pos + 2] == b"\r\n":
                    return self.pos + 2
                end = data.find(HEAD_END, self.pos)
                if end >= 0:
                    return end + len(HEAD_END)
                return len(data) if len(data) - self.pos > MAX_HEAD_BYTES else waiting
            eol = data.find(b"\r\n", self.pos, self.pos + MAX_CHUNK_LINE)
            if eol < 0:
                return len(data) if len(data) - self.pos >= MAX_CHUNK_LINE else waiting
            try:
                size = int(bytes(data[self.pos:eol]).split(b";", 1)[0].strip(), 16)
            except ValueError:
                return len(data)
            if not 0 <= size <= MAX_BUFFERED_BODY:
                return len(data)
            if size == 0:
                self.pos, self.trailers = eol + 2, True
                continue
            after = eol + 2 + size
            if len(data) < after + 2:
                return waiting
            if data[after:after + 2] != b"\r\n":
                return len(data)
            self.pos = after + 2


def _recv_ready(sock: socket.socket, size: int) -> bytes | None:
    """What a readable non-blocking socket holds (up to ``size`` bytes); ``b""`` once the client
    has gone (end of stream or an error); None if nothing is there after all."""
    try:
        return sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def _set_io_deadline(sock: socket.socket, seconds: float) -> None:
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def _waited_on_client(started: float) -> float:
    """How long a socket call begun at ``started`` waited on the client: 0 if it returned
    within ``_PROMPT_S`` (the time to take the GIL back, not the client's)."""
    waited = time.monotonic() - started
    return waited if waited > _PROMPT_S else 0.0


class _SlowReader(TimeoutError):
    """An answer the client read slower than the minimum rate, or stopped reading."""


class _Paced:
    """The connection's socket while a thread serves one request: ``recv`` and ``sendall``
    count the time blocked on the client against ``grace_s`` plus ``bytes / min_rate`` each
    way; everything else is the socket's own.

    A call that returns within ``_PROMPT_S`` did not wait on the client and is not counted:
    the thread takes the GIL back after each call, which takes milliseconds when other threads
    are busy, and a prompt reader of a long token stream would otherwise fall behind by that
    much per event. (Trying each call without waiting first, ``MSG_DONTWAIT``, was measured
    worse: on loopback it let the kernel's deadline cut off a client reading at 64 KiB/s.)

    A body read past its budget raises werkzeug's ``RequestTimeout``, through gunicorn's body
    reader into the application, which answers 408 with ``Connection: close`` (a body that
    failed to read leaves the connection unusable); so does one that reached the kernel
    deadline. An answer past its budget raises ``_SlowReader``, which
    ``HeadFirstWorker.handle_request`` logs in one line before resetting the connection."""

    __slots__ = ("sock", "req", "grace_s", "min_rate", "received", "recv_blocked", "sent",
                 "send_blocked")

    def __init__(self, sock: socket.socket, req: Any, grace_s: float, min_rate: float) -> None:
        self.sock, self.req, self.grace_s, self.min_rate = sock, req, grace_s, min_rate
        self.received = self.sent = 0
        self.recv_blocked = self.send_blocked = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def recv(self, size: int) -> bytes:
        if self.sock.gettimeout() is not None:   # a caller with its own deadline: gunicorn's
            return self.sock.recv(size)          # graceful close on its error path
        started = time.monotonic()
        try:
            data = self.sock.recv(size)
        except BlockingIOError:   # the kernel deadline: nothing for io_timeout_s
            self._refuse("the request body stopped arriving")
        self.recv_blocked += _waited_on_client(started)
        self.received += len(data)
        if self.recv_blocked > self.grace_s + self.received / self.min_rate:
            self._refuse(f"the request body arrived slower than {self.min_rate:.0f} bytes a "
                         "second")
        return data

    def _refuse(self, why: str) -> NoReturn:
        self.req.must_close = True   # the 408 says "Connection: close" (RFC 9110, 15.5.9)
        raise RequestTimeout(why)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            started = time.monotonic()
            try:   # checked after each slice, or each I/O deadline at worst
                written = self.sock.send(view[:_SEND_SLICE])
            except BlockingIOError:   # the kernel deadline: nothing taken for io_timeout_s
                raise _SlowReader(errno.ETIMEDOUT, "the client read nothing within the I/O "
                                                   "deadline") from None
            self.send_blocked += _waited_on_client(started)
            self.sent += written
            view = view[written:]
            if self.send_blocked > self.grace_s and \
                    self.send_blocked > self.grace_s + self._acknowledged() / self.min_rate:
                raise _SlowReader(errno.ETIMEDOUT, "the client read the answer slower than "
                                                   f"{self.min_rate:.0f} bytes a second")

    def _acknowledged(self) -> int:
        """The bytes of the answer the client has taken: those written, less those still in the
        kernel's send queue (Linux's ``SIOCOUTQ``; elsewhere, all those written). Counting the
        queue would credit a slow reader with seconds for bytes it never read: on loopback the
        kernel buffers 3 MB of an answer, 45 s at 64 KiB a second."""
        try:
            queued = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        except (OSError, AttributeError):
            return self.sent
        return max(0, self.sent - struct.unpack("i", queued)[0])


class _Conn(TConn):
    """gunicorn's connection, whose graceful close is the worker's non-blocking linger. gunicorn
    calls it from the event loop (``finish_request``); from any other thread, or over TLS,
    gunicorn's own close runs."""

    def __init__(self, worker: "HeadFirstWorker", *args: Any) -> None:
        super().__init__(*args)
        self.worker = worker
        self.io_deadline_set = False
        self.cut_off = False   # an answer was cut off: reset at once, no linger

    def close(self, graceful: bool = False) -> None:
        if self.cut_off:
            util.close(self.sock)
        elif graceful and not self.cfg.is_ssl and \
                threading.current_thread() is threading.main_thread():
            self.worker.linger(self)
        else:
            super().close(graceful)


class HeadFirstWorker(ThreadWorker):
    """``worker_class = "api.gunicorn_worker.HeadFirstWorker"`` (set in gunicorn.conf.py,
    which also sets the two deadlines from the environment)."""

    head_timeout_s: float = 10.0
    io_timeout_s: float = 30.0
    min_rate: float = 16384.0   # bytes a second, each way, once io_timeout_s is spent

    def init_process(self) -> None:
        self.heads: deque[Any] = deque()   # connections whose head is still arriving
        self.lingering: deque[Any] = deque()   # closed by us, drained until the client closes
        super().init_process()

    # -- the event loop: collect heads without a thread ----------------------------------
    def accept(self, listener: socket.socket) -> None:  # type: ignore[override]
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = _Conn(self, self.cfg, client_sock, client_addr, listener.getsockname())
        self._await_head(conn)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection starts its next request: collect that head too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn)

    def _await_head(self, conn: Any) -> None:
        if self.cfg.is_ssl:
            self.enqueue_req(conn)
            return
        conn.sock.setblocking(False)
        conn.head = bytearray()
        conn.need = None
        conn.head_deadline = time.monotonic() + self.head_timeout_s
        self.heads.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._read_head, conn))

    def _read_head(self, conn: Any, client: Any) -> None:
        data = _recv_ready(conn.sock, 256 * 1024)
        if data is None:
            return
        if data:
            searched = len(conn.head)
            conn.head += data
            if conn.need is None:
                conn.need = _needed(conn.head, searched)
            need = conn.need.find(conn.head) if isinstance(conn.need, _ChunkedEnd) \
                else conn.need
            if need is None or len(conn.head) < need:
                return
        self.poller.unregister(conn.sock)
        self.heads.remove(conn)
        if not data:   # the client went away before finishing its head
            self.nr_conns -= 1
            conn.close()
            return
        conn.data_ready = True
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        """Also close the connections whose head did not arrive in time, and end the lingers
        that reached their deadline."""
        super().murder_pending()
        now = time.monotonic()
        while self.heads and self.heads[0].head_deadline <= now:
            conn = self.heads.popleft()
            self._unregister(conn)
            self.nr_conns -= 1
            conn.close()
        while self.lingering and self.lingering[0].linger_deadline <= now:
            self._end_linger(self.lingering.popleft())

    def _unregister(self, conn: Any) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass

    # -- the graceful close, on the event loop ---------------------------------------------
    def linger(self, conn: Any) -> None:
        """Send FIN, then drain what the client still sends until it closes (``LINGER_S`` at
        most). Beyond ``worker_connections`` lingering sockets (a flood) a socket is closed at
        once."""
        sock = conn.sock
        if len(self.lingering) >= self.worker_connections:
            util.close(sock)
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
        except OSError:
            util.close(sock)
            return
        conn.linger_deadline = time.monotonic() + LINGER_S
        conn.drained = 0
        self.lingering.append(conn)
        self.poller.register(sock, selectors.EVENT_READ, partial(self._drain, conn))

    def _drain(self, conn: Any, client: Any) -> None:
        data = _recv_ready(conn.sock, LINGER_MAX_DRAIN)
        if data is None:
            return
        conn.drained += len(data)
        if data and conn.drained < LINGER_MAX_DRAIN:
            return
        self.lingering.remove(conn)
        self._end_linger(conn)

    def _end_linger(self, conn: Any) -> None:
        self._unregister(conn)
        util.close(conn.sock)

    # -- a thread: the head is already here ----------------------------------------------
    def handle(self, conn: Any) -> Any:
        head = getattr(conn, "head", b"")
        try:
            if not conn.io_deadline_set:
                _set_io_deadline(conn.sock, self.io_timeout_s)
                conn.io_deadline_set = True
            if head:
                conn.head = b""
                conn.sock.setblocking(True)
                conn.init()
                conn.parser.unreader.unread(bytes(head))
        except OSError:
            return False   # the socket died meanwhile: finish_request closes it
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        if self.cfg.is_ssl:
            return super().handle_request(req, conn)
        sock, unreader = conn.sock, conn.parser.unreader
        conn.sock = unreader.sock = _Paced(sock, req, self.io_timeout_s, self.min_rate)
        try:
            return super().handle_request(req, conn)
        except _SlowReader as exc:
            # one line, not gunicorn's traceback; the answer is broken anyway: a reset drops
            # its queued rest at once, instead of the kernel delivering it at the client's pace
            self.log.warning("%s %s: answer cut off, connection reset: %s", req.method,
                             req.path, exc.strerror)
            conn.cut_off = True
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raise StopIteration() from None
        finally:
            conn.sock = unreader.sock = sock
