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


def request_end(data: bytes | bytearray, max_head: int, max_body: int) -> Optional[int]:
    """The index just past the first request in `data`; None while it is incomplete.

    Raises Refused when the head exceeds `max_head` bytes or the body `max_body`.
    """
    head_end = data.find(HEAD_END, 0, max_head + len(HEAD_END))
    if head_end < 0:
        if len(data) > max_head:
            raise Refused(431, "Request Header Fields Too Large", f"the request head exceeds {max_head} bytes")
        return None
    body_start = head_end + len(HEAD_END)
    length, chunked = _framing(bytes(data[:head_end]))
    if chunked:
        return _chunked_end(data, body_start, max_body)
    if length is None:
        return body_start
    if length > max_body:
        raise Refused(413, "Content Too Large", f"request body is {length} bytes; the limit is {max_body} bytes")
    end = body_start + length
    return end if len(data) >= end else None


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


def _chunked_end(data: bytes | bytearray, pos: int, max_body: int) -> Optional[int]:
    """The end of a chunked body starting at `pos` (with its trailers); None while incomplete."""
    body = 0
    while True:
        line_end = data.find(b"\r\n", pos, pos + 1024)
        if line_end < 0:
            if len(data) - pos > 1024:
                return pos  # a size line no client sends: gunicorn rejects it
            return None
        size_text = bytes(data[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return pos  # gunicorn answers the malformed chunk size
        body += size
        if body > max_body:
            raise Refused(413, "Content Too Large", f"request body exceeds the limit of {max_body} bytes")
        if size == 0:
            trailers = line_end + 2
            if data[trailers : trailers + 2] == b"\r\n":
                return trailers + 2
            trailers_end = data.find(HEAD_END, trailers - 2)
            return None if trailers_end < 0 else trailers_end + len(HEAD_END)
        pos = line_end + 2 + size + 2  # the chunk and its CRLF
        if len(data) < pos:
            return None
