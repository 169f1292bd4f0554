"""Where an HTTP/1.1 request ends in the bytes received so far, without parsing it for the app.

The worker's event loop reads each request whole before a thread takes it
(console/server/worker.py); this tells it when a request is whole. It reads only
what framing needs (the end of the head, Content-Length, chunked
Transfer-Encoding). A head it cannot frame (a malformed length, an unknown
coding) ends at the head: gunicorn's parser then rejects it with its own message.
"""

from __future__ import annotations

from typing import Optional

HEAD_END = b"\r\n\r\n"


class Refused(Exception):
    """A request refused before it is read whole: its status, reason and detail."""

    def __init__(self, status: int, reason: str, detail: str):
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


class RequestFramer:
    """Finds where one request ends in a buffer that only grows, resuming where it left
    off: each byte is looked at about once, however many small reads bring it."""

    def __init__(self, max_head: int, max_body: int):
        self.max_head, self.max_body = max_head, max_body
        self._scanned = 0  # how far the search for the head's end has looked
        self._body_start: Optional[int] = None
        self._length: Optional[int] = None  # the body's end, for a Content-Length body
        self._chunk = 0  # where the next chunk's size line starts, for a chunked body
        self._body = 0  # the chunked body's data so far
        self.expects_continue = False  # the head asked for "100 Continue" before its body

    def end(self, data: bytes | bytearray) -> Optional[int]:
        """The index just past the request in `data`; None while it is incomplete.

        Raises Refused when the head exceeds `max_head` bytes or the body `max_body`.
        """
        if self._body_start is None and not self._read_head(data):
            return None
        if self._length is not None:
            return self._length if len(data) >= self._length else None
        return self._chunked_end(data)

    def _read_head(self, data: bytes | bytearray) -> bool:
        head_end = data.find(HEAD_END, max(0, self._scanned - 3), self.max_head + len(HEAD_END))
        if head_end < 0:
            if len(data) > self.max_head:
                raise Refused(431, "Request Header Fields Too Large", f"the request head exceeds {self.max_head} bytes")
            self._scanned = len(data)
            return False
        self._body_start = self._chunk = head_end + len(HEAD_END)
        head = bytes(data[:head_end])
        length, chunked = _framing(head)
        self.expects_continue = _expects_continue(head)
        if not chunked:
            if (length or 0) > self.max_body:
                raise Refused(413, "Content Too Large",
                              f"request body is {length} bytes; the limit is {self.max_body} bytes")
            self._length = self._body_start + (length or 0)
        return True

    def _chunked_end(self, data: bytes | bytearray) -> Optional[int]:
        """The end of the chunked body (with its trailers); None while incomplete."""
        while True:
            pos = self._chunk
            line_end = data.find(b"\r\n", pos, pos + 1024)
            if line_end < 0:
                return pos if len(data) - pos > 1024 else None  # a size line no client sends: gunicorn rejects it
            try:
                size = int(bytes(data[pos:line_end]).split(b";", 1)[0].strip(), 16)
            except ValueError:
                return pos  # gunicorn answers the malformed chunk size
            if size < 0:
                return pos
            if size == 0:
                trailers = line_end + 2
                if data[trailers : trailers + 2] == b"\r\n":
                    return trailers + 2
                if len(data) < trailers + 2:
                    return None
                trailers_end = data.find(HEAD_END, trailers - 2)
                return None if trailers_end < 0 else trailers_end + len(HEAD_END)
            if self._body + size > self.max_body:
                raise Refused(413, "Content Too Large", f"request body exceeds the limit of {self.max_body} bytes")
            following = line_end + 2 + size + 2  # the chunk and its CRLF
            if len(data) < following:
                return None
            self._body += size
            self._chunk = following


def request_end(data: bytes | bytearray, max_head: int, max_body: int) -> Optional[int]:
    """The index just past the first request in `data`; None while it is incomplete (see RequestFramer)."""
    return RequestFramer(max_head, max_body).end(data)


def _framing(head: bytes) -> tuple[Optional[int], bool]:
    """(Content-Length, chunked) from a head; (None, False) when it has no body or a framing
    gunicorn must judge (a malformed or repeated length, a coding other than chunked)."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"content-length":
            lengths.append(value.strip())
        elif name == b"transfer-encoding":
            codings.extend(part.strip().lower() for part in value.split(b","))
    if codings:
        return None, codings == [b"chunked"]
    if len(lengths) == 1 and lengths[0].isdigit() and len(lengths[0]) <= 19:
        return int(lengths[0]), False
    return None, False


def _expects_continue(head: bytes) -> bool:
    """An HTTP/1.1 head with `Expect: 100-continue` (HTTP/1.0 clients must not be answered 100)."""
    request_line, _, fields = head.partition(b"\r\n")
    if not request_line.endswith(b"HTTP/1.1"):
        return False
    return any(
        name.strip().lower() == b"expect" and value.strip().lower() == b"100-continue"
        for name, _, value in (line.partition(b":") for line in fields.split(b"\r\n"))
    )
