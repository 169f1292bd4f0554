"""The console's gunicorn worker: gthread, with two hand-offs less per keep-alive request.

gthread gives a connection back to its main thread's poller after every request;
the next request on it then costs two thread hand-offs (pool thread → poller →
pool thread), each a wake-up and a turn at the GIL. Here the thread that answered
a keep-alive request watches its connection a moment longer and serves the next
request itself, unless another connection is waiting for a thread.

A request the client pipelined (sent before the previous answer) may already sit
in the parser's buffer: no socket readiness will announce it, and gthread's poller
would leave it unanswered until the keep-alive timeout. It is served at once.
"""

from __future__ import annotations

import os
import select
import threading

from gunicorn.workers.gthread import ThreadWorker

# How long a thread watches its connection for the next request, in slices: a
# connection that becomes ready meanwhile waits at most one slice for a thread.
WATCH_SECONDS = 0.005
WATCH_SLICE_SECONDS = 0.001
_WATCH_SLICES = round(WATCH_SECONDS / WATCH_SLICE_SECONDS)


class ConsoleThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._queued = 0  # connections handed to the pool that no thread has taken yet
        self._queued_lock = threading.Lock()

    def enqueue_req(self, conn):
        with self._queued_lock:
            self._queued += 1
        super().enqueue_req(conn)

    def handle(self, conn):
        with self._queued_lock:
            self._queued -= 1
        while True:
            keepalive, conn = super().handle(conn)
            if not (keepalive and self.alive and (_buffered(conn) or self._next_request_arrives(conn))):
                return keepalive, conn

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
    parser = conn.parser
    if parser is None:
        return False
    buffer = parser.unreader.buf
    buffer.seek(0, os.SEEK_END)  # where gunicorn's Unreader appends and reads from
    return buffer.tell() > 0
