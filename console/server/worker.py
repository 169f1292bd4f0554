"""The console's gunicorn worker: gthread, with each request read whole before a thread takes it.

gthread hands a connection to a thread as soon as it is accepted or readable; the
thread then reads the request from a blocking socket. A client that sends its
request a byte at a time holds that thread for as long as it keeps sending, and a
few dozen such clients stop the worker. Here the worker's event loop reads every
request (head and body, up to TELEMETRY_MAX_BODY_BYTES) with non-blocking reads,
as nginx and waitress do, and hands it to a thread only once it is whole; no
thread ever waits for a client's bytes. A connection whose request is not whole
within TELEMETRY_API_REQUEST_DEADLINE seconds of its first byte (of its accept, for
a new connection) is answered 408 and closed, however steadily its bytes arrive. A
send that waits that long for a client that does not read its answer ends the
connection too.

Requests the client pipelined are read from the same buffer, one after the other.
The thread that answered a keep-alive request watches its connection a moment
longer and serves the next request itself if it arrives whole meanwhile, unless
another connection is waiting for a thread (gthread would give the connection back
to the loop: two thread hand-offs, each a wake-up and a turn at the GIL).

Refusals the loop makes (a head over MAX_HEAD_BYTES, a body over the limit) and
the errors gunicorn's parser answers itself (an oversized request line or header,
a malformed line) are JSON with a `detail`, like every other error of the API.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import resource
import select
import selectors
import socket
import struct
import termios
import threading
import time
from functools import partial

from gunicorn import util as gunicorn_util
from gunicorn.workers.gthread import TConn, ThreadWorker

from console.core.settings import load_settings
from console.server.framing import Refused, RequestFramer

log = logging.getLogger("console.server.worker")

# The largest request head read: gunicorn's own limits (4,094-byte request line,
# 8,190-byte header lines) fit many times over.
MAX_HEAD_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024
# After a refusal, what the client still sends is read and thrown away up to these bounds.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 5.0
# Chunk size lines and CRLFs a chunked body may add to its data.
CHUNK_FRAMING_SLACK = 64 * 1024
# Descriptors a worker keeps for what is not a client (database, log, lock files).
FD_RESERVE = 64
# How long a thread watches its keep-alive connection for the next request, in
# slices: a connection that becomes ready meanwhile waits at most one slice for a thread.
WATCH_SECONDS = 0.005
WATCH_SLICE_SECONDS = 0.001
_WATCH_SLICES = round(WATCH_SECONDS / WATCH_SLICE_SECONDS)


class ConsoleThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = load_settings()
        self._deadline = settings.api_request_deadline
        self._max_body = settings.max_body_bytes
        self._reading: dict[TConn, None] = {}  # connections whose next request the loop is reading
        self._queued = 0  # connections handed to the pool that no thread has taken yet
        self._queued_lock = threading.Lock()

    def init_process(self):
        # Hostile connections wait in the loop, not in threads, so many may be open at
        # once: take every descriptor the hard limit allows, and hold no more
        # connections than there are descriptors to spare.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            soft = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            except (ValueError, OSError):
                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.worker_connections = max(self.cfg.threads + 1, min(self.worker_connections, soft - FD_RESERVE))
        super().init_process()

    # -- the event loop's side -------------------------------------------------

    def accept(self, listener):
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        # A thread's blocking send to a client that does not read fails after the deadline.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", self._deadline, 0))
        conn = TConn(self.cfg, sock, client, listener.getsockname())  # non-blocking
        self._read_next(conn, b"", time.monotonic() + self._deadline, idle=False)

    def finish_request(self, conn, fs):
        """After a request (on the loop): read the connection's next one, or close it."""
        try:
            keepalive = fs.result() if not fs.cancelled() else False
        except Exception:  # noqa: BLE001 - the thread's error ended this connection
            keepalive = False
        if not (keepalive and self.alive):
            self._close(conn, graceful=bool(keepalive))
            return
        conn.sock.setblocking(False)
        # A pipelined request, perhaps, or the part of the next one a thread read.
        received = bytes(conn.inbox) + conn.parser.unreader.take_buffered()
        idle = not received  # waiting for a next request: the keep-alive timeout, then its deadline
        self._read_next(conn, received, time.monotonic() + (self.cfg.keepalive if idle else self._deadline), idle)

    def _read_next(self, conn, received: bytes, deadline: float, idle: bool) -> None:
        conn.inbox = bytearray(received)
        conn.framer = RequestFramer(MAX_HEAD_BYTES, self._max_body)
        conn.deadline = deadline
        conn.idle = idle
        conn.lingering = False
        conn.continued = False
        self._reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        if received:
            self._advance(conn)

    def _on_readable(self, conn, _sock) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client closed (or reset) its side
            self._drop(conn)
            return
        if conn.lingering:  # the rest of a refused request: read and thrown away, within bounds
            conn.linger_left -= len(data)
            if conn.linger_left <= 0:
                self._drop(conn)
            return
        if conn.idle:  # the first byte of a kept-alive connection's next request
            conn.idle = False
            conn.deadline = time.monotonic() + self._deadline
        conn.inbox += data
        self._advance(conn)

    def _advance(self, conn) -> None:
        """Hand the connection to a thread once its request is whole; refuse it when too large."""
        try:
            end = conn.framer.end(conn.inbox)
            if end is None and len(conn.inbox) > MAX_HEAD_BYTES + self._max_body + CHUNK_FRAMING_SLACK:
                raise Refused(413, "Content Too Large", f"request body exceeds the limit of {self._max_body} bytes")
        except Refused as refused:
            self._refuse(conn, refused)
            return
        if end is None:
            if conn.framer.expects_continue and not conn.continued:
                # The client waits for this before it sends its body (curl: 1 s, then sends anyway).
                conn.continued = True
                try:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass
            return
        self._stop_reading(conn)
        conn.data_ready = True  # gthread's wait for a first byte: the request is here
        self.enqueue_req(conn)

    def _refuse(self, conn, refused: Refused) -> None:
        """Answer now and close once the client stops sending (or at the deadline), so
        that a client still sending its body reads the answer instead of a reset."""
        log.info("refused a request: %s", refused.detail)
        try:
            conn.sock.send(_json_error(refused.status, refused.reason, refused.detail))
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        conn.inbox = bytearray()
        conn.lingering = True
        # Long enough for the client to read the answer; not a sink for a gigabyte.
        conn.linger_left = LINGER_BYTES
        conn.deadline = min(conn.deadline, time.monotonic() + LINGER_SECONDS)

    def _answer_late(self, conn) -> None:
        """408 to a client whose request was not whole in time (best effort: it is closed next)."""
        detail = f"the request was not received whole within {self._deadline} s"
        log.info("dropped a client: %s", detail)
        try:
            conn.sock.send(_json_error(408, "Request Timeout", detail))
        except OSError:
            pass

    def _stop_reading(self, conn) -> None:
        self._reading.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _drop(self, conn) -> None:
        self._stop_reading(conn)
        self._close(conn, graceful=False)

    def _close(self, conn, graceful: bool) -> None:
        self.nr_conns -= 1
        try:
            conn.close(graceful=graceful)
        except OSError:
            pass

    def murder_keepalived(self, force=False):
        """Close the connections past their deadline; all of them when forced, the idle
        ones as soon as the worker stops."""
        now = time.monotonic()
        for conn in list(self._reading):
            if force or conn.deadline <= now or (not self.alive and not conn.inbox):
                if conn.inbox and not conn.lingering:
                    self._answer_late(conn)
                _reset_if_unread(conn.sock)
                self._drop(conn)
        super().murder_keepalived(force)

    # -- a thread's side -------------------------------------------------------

    def enqueue_req(self, conn):
        with self._queued_lock:
            self._queued += 1
        super().enqueue_req(conn)

    def handle(self, conn):
        with self._queued_lock:
            self._queued -= 1
        conn.init()  # the parser; the request the loop read goes into its buffer
        conn.parser.unreader.chunk = _nothing_more  # the loop read the whole request
        while True:
            conn.parser.unreader.unread(bytes(conn.inbox))
            conn.inbox = bytearray()
            keepalive = super().handle(conn)
            if not (keepalive and self.alive and self._next_request_is_whole(conn)):
                return keepalive

    def _next_request_is_whole(self, conn) -> bool:
        """After a keep-alive answer, a thread watches its connection for WATCH_SECONDS
        (unless another connection waits for a thread) and serves the next request
        itself when it arrives whole: two hand-offs fewer per request. Reads here never
        block; a request still partial, or refused, goes back to the event loop."""
        conn.inbox = bytearray(conn.parser.unreader.take_buffered())  # pipelined, perhaps
        framer = RequestFramer(MAX_HEAD_BYTES, self._max_body)
        poller = select.poll()  # not select(): descriptors can exceed FD_SETSIZE
        poller.register(conn.sock, select.POLLIN)
        for _ in range(_WATCH_SLICES):
            try:
                if framer.end(conn.inbox) is not None:
                    return True
            except Refused:
                return False  # the loop answers it
            if self._queued > 0:
                return False
            if not poller.poll(WATCH_SLICE_SECONDS * 1000):
                continue
            try:
                data = conn.sock.recv(RECV_BYTES, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                return False  # closed: the loop reads the end of it
            conn.inbox += data
        return False


def _reset_if_unread(sock) -> None:
    """Close with a reset when an answer is still unsent (its client stopped reading): a
    plain close would leave the kernel holding the answer, and the connection, until it
    gave up retransmitting."""
    try:
        unsent = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        if unsent:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _nothing_more(size_hint=None) -> bytes:
    """A thread's read past the buffered request: none (a request framed shorter
    than gunicorn reads it ends as if the client had closed)."""
    return b""


def _json_error(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answer (`util.write_error`), as JSON instead of HTML."""
    gunicorn_util.write_nonblock(sock, _json_error(status_int, reason, mesg or reason))


# gunicorn has no hook for the body of the errors it answers itself: its workers'
# `handle_error` writes through this module attribute, so it is replaced here, in the
# worker processes that load this class.
gunicorn_util.write_error = _write_json_error
