"""The console's gunicorn worker: gthread, with two hand-offs less per keep-alive request.

gthread gives a connection back to its main thread's poller after every request;
the next request on it then costs two thread hand-offs (pool thread → poller →
pool thread), each a wake-up and a turn at the GIL. Here the thread that answered
a keep-alive request watches its connection a moment longer and serves the next
request itself, unless another connection is waiting for a thread.

A request the client pipelined (sent before the previous answer) may already sit
in the parser's buffer: no socket readiness will announce it, and gthread's poller
would leave it unanswered until the keep-alive timeout. It is served at once.

A client that goes silent in the middle of a request (a half-sent request, a peer
gone from the network) would hold its thread for as long as the connection lives,
which for a vanished peer is forever: a handful of them stop the worker. After
TELEMETRY_API_READ_TIMEOUT seconds without a byte its connection reads as closed.

A request answered before its body was read whole (a 413 for a Content-Length over
the limit, or a chunked body cut at the limit) ends its connection when more than
64 KiB is left: gunicorn would
otherwise read and discard the rest, however large, before the next request. The
answer is sent at once; the connection then lingers a few seconds reading and
throwing away what the client still sends (so that the client reads the answer
instead of a reset), and closes.

A request gunicorn cannot parse (a request line over 4,094 bytes, oversized headers,
a malformed line) never reaches the app; gunicorn answers it itself, with an HTML
page. Here that answer is JSON with a `detail`, like every other error of the API.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import struct
import threading
import time

from gunicorn import util as gunicorn_util
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers.gthread import ThreadWorker

from console.core.settings import load_settings

log = logging.getLogger("console.server.worker")

# How long a thread watches its connection for the next request, in slices: a
# connection that becomes ready meanwhile waits at most one slice for a thread.
WATCH_SECONDS = 0.005
WATCH_SLICE_SECONDS = 0.001
_WATCH_SLICES = round(WATCH_SECONDS / WATCH_SLICE_SECONDS)

# Closing a connection after an answer that left the body unread: read and throw
# away at most this much, for at most this long, stopping sooner after a silent gap.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 5.0
LINGER_IDLE_SECONDS = 0.5
# An unread body up to this size (a 401 to a small POST) is read and thrown away by
# gunicorn as usual, and the connection kept.
DISCARD_BYTES = 64 * 1024


class ConsoleThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._queued = 0  # connections handed to the pool that no thread has taken yet
        self._queued_lock = threading.Lock()
        self._read_timeout = load_settings().api_read_timeout

    def enqueue_req(self, conn):
        with self._queued_lock:
            self._queued += 1
        super().enqueue_req(conn)

    def handle(self, conn):
        with self._queued_lock:
            self._queued -= 1
        _drop_when_silent(conn, self._read_timeout)
        while True:
            keepalive, conn = super().handle(conn)
            if not (keepalive and self.alive and (_buffered(conn) or self._next_request_arrives(conn))):
                return keepalive, conn

    def handle_request(self, req, conn):
        keepalive = super().handle_request(req, conn)
        if _too_much_body_left(req):
            _linger(conn.sock)
            return False
        return keepalive

    def _next_request_arrives(self, conn) -> bool:
        """True once the connection is readable; False after WATCH_SECONDS, or at once when
        another connection waits for a thread."""
        poller = select.poll()  # not select(): descriptors can exceed FD_SETSIZE
        poller.register(conn.sock, select.POLLIN)
        for _ in range(_WATCH_SLICES):
            if self._queued > 0:
                return False
            if poller.poll(WATCH_SLICE_SECONDS * 1000):
                return True
        return False


def _buffered(conn) -> bool:
    """True when the parser holds bytes read past the last request (a pipelined request)."""
    buffer = conn.parser.unreader.buf  # the parser exists: gthread made it before handing over
    buffer.seek(0, os.SEEK_END)  # where gunicorn's Unreader appends and reads from
    return buffer.tell() > 0


def _too_much_body_left(req) -> bool:
    """True when the app answered without reading the body, and more than DISCARD_BYTES
    (or a chunked body of unknown size) is left."""
    reader = req.body.reader
    if isinstance(reader, LengthReader):
        return reader.length > DISCARD_BYTES
    if isinstance(reader, ChunkedReader):
        return reader.parser is not None
    return False


def _linger(sock) -> None:
    """Say the answer is complete (FIN), then throw away what the client still sends, within bounds."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + LINGER_SECONDS
    remaining = LINGER_BYTES
    while remaining > 0:
        wait = min(LINGER_IDLE_SECONDS, deadline - time.monotonic())
        if wait <= 0 or not poller.poll(wait * 1000):
            return
        try:
            data = sock.recv(min(remaining, 1 << 20), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            return
        if not data:
            return
        remaining -= len(data)


def _drop_when_silent(conn, seconds: int) -> None:
    """Make a read that waits `seconds` for a byte end the connection, as if the client had closed it.

    The kernel's receive timeout (SO_RCVTIMEO) bounds each read of the blocking
    socket without an extra poll per read; gunicorn's parser treats the empty
    read as the client gone. Answers are written without a bound, as before.
    """
    unreader = conn.parser.unreader
    if "chunk" in vars(unreader):  # this connection is bounded already
        return
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, 0))
    receive = unreader.chunk  # gunicorn's own read: one recv of the socket

    def chunk() -> bytes:
        try:
            return receive()
        except BlockingIOError:  # SO_RCVTIMEO ran out
            log.info("dropped a client that sent nothing for %d s in the middle of a request", seconds)
            return b""

    unreader.chunk = chunk


def _write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answer (`util.write_error`), as JSON instead of HTML."""
    body = json.dumps({"detail": mesg or reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


# gunicorn has no hook for the body of the errors it answers itself: its workers'
# `handle_error` writes through this module attribute, so it is replaced here, in the
# worker processes that load this class.
gunicorn_util.write_error = _write_json_error
