"""console/server/framing.py: where a request ends in the bytes received so far, byte by byte."""

import pytest

from console.server.framing import Refused, RequestFramer, request_end

HEAD = b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\n"


def _first_complete_prefix(data: bytes, max_head: int = 1024, max_body: int = 1000) -> int | None:
    """The length of the shortest prefix of `data` that holds a whole request, fed a byte at a
    time to one framer (which resumes where it left off) and to a fresh one each time."""
    framer = RequestFramer(max_head, max_body)
    for size in range(len(data) + 1):
        end = framer.end(data[:size])
        assert end == request_end(data[:size], max_head, max_body)
        if end is not None:
            assert end == size  # whole exactly when its last byte arrives
            return size
    return None


def test_a_request_without_a_body_ends_at_its_head():
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _first_complete_prefix(request + b"GET /next") == len(request)


def test_a_content_length_body_is_whole_only_with_its_last_byte():
    request = HEAD + b"Content-Length: 5\r\n\r\nhello"
    assert _first_complete_prefix(request + b"POST /pipelined") == len(request)


def test_content_length_is_read_whatever_its_case_and_spacing():
    request = HEAD + b"cOnTeNt-LeNgTh:   3  \r\n\r\nabc"
    assert request_end(request, 1024, 1000) == len(request)


def test_a_chunked_body_ends_after_its_last_chunk_and_trailers():
    body = b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body
    assert _first_complete_prefix(request + b"GET /next HTTP/1.1\r\n\r\n") == len(request)


def test_a_chunked_body_without_trailers():
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    assert _first_complete_prefix(request) == len(request)


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: -1", b"Content-Length: 1e3", b"Content-Length: 5\r\nContent-Length: 6",
     b"Content-Length: " + b"9" * 40, b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: identity"],
)
def test_a_framing_only_gunicorn_can_judge_ends_at_the_head(framing):
    # gunicorn's parser then answers it (400/501): the thread never waits for a body.
    head = HEAD + framing + b"\r\n\r\n"
    assert request_end(head + b"body bytes", 1024, 1000) == len(head)


def test_a_malformed_chunk_size_ends_where_it_starts():
    head = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    assert request_end(head + b"zz\r\nhello\r\n", 1024, 1000) == len(head)


def test_a_head_over_the_limit_is_refused_431_even_before_it_ends():
    with pytest.raises(Refused) as refused:
        request_end(b"GET /" + b"a" * 2000, 1024, 1000)
    assert refused.value.status == 431
    assert request_end(b"GET /" + b"a" * 1000, 1024, 1000) is None  # under the limit: wait for more


@pytest.mark.parametrize(
    "request_bytes",
    [HEAD + b"Content-Length: 1001\r\n\r\n", HEAD + b"Content-Length: 99999999999999999\r\n\r\n",
     HEAD + b"Transfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"a" * 1000 + b"\r\n1\r\n"],
    ids=["length over the limit", "huge length", "chunks adding up over the limit"],
)
def test_a_body_over_the_limit_is_refused_413_before_it_is_read(request_bytes):
    with pytest.raises(Refused) as refused:
        request_end(request_bytes, 1024, 1000)
    assert refused.value.status == 413
    assert "limit" in refused.value.detail


def test_a_chunked_body_of_many_tiny_chunks_fed_in_pieces_is_framed_once_through():
    body = b"1\r\na\r\n" * 5000 + b"0\r\n\r\n"
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body
    framer = RequestFramer(1024, 10_000)
    ends = [framer.end(request[:size]) for size in range(0, len(request), 997)]
    assert set(ends) == {None}
    assert framer.end(request + b"GET /next") == len(request)


@pytest.mark.parametrize(
    ("head", "expects"),
    [(HEAD + b"Content-Length: 3\r\nExpect: 100-Continue\r\n\r\n", True),
     (HEAD + b"Content-Length: 3\r\n\r\n", False),
     (HEAD.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\n", False)],
    ids=["HTTP/1.1 with Expect", "no Expect", "HTTP/1.0 with Expect"],
)
def test_a_head_that_expects_100_continue_is_told_apart(head, expects):
    framer = RequestFramer(1024, 1000)
    assert framer.end(head) is None  # the body has not come
    assert framer.expects_continue is expects
