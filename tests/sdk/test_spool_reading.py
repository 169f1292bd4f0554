"""Reading the spool for a batch: offsets, whole lines, and everything else handed on as torn."""

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from telemetry.spool import make_line, read_lines, run_head, sort_lines

HEAD = run_head("e", "r", "a", "j", "2026-12-04T00:00:00+00:00")


def whole(n):
    return make_line("event", HEAD, {"event_type": "x", "payload": {"n": n, "s": "}\n{"[: n % 3]}})


JUNK = [b"", b"   ", b"not json", b'{"v":1,"id":"torn', b"}", b"{}", b'{"v":1,"id":"x"}\r']
PIECES = st.lists(
    st.one_of(
        st.integers(0, 50).map(lambda n: ("whole", whole(n))),
        st.sampled_from(JUNK).map(lambda junk: ("junk", junk + b"\n")),
        # another writer's torn fragment glued in front of a whole line
        st.integers(0, 50).map(lambda n: ("glued", whole(n)[:20] + whole(n + 1))),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(pieces=PIECES, limit=st.integers(1, 60), skip=st.integers(0, 3))
def test_a_batch_holds_every_line_in_order_with_its_offset(tmp_path_factory, pieces, limit, skip):
    path = tmp_path_factory.mktemp("spool") / "events_20260101.ndjson"
    data = b"".join(line for _, line in pieces)
    path.write_bytes(data)
    offset = sum(len(line) for _, line in pieces[:skip])
    lines, new_offset = read_lines(path, offset, limit)
    taken = pieces[skip : skip + limit]
    assert [body + b"\n" for _, body in lines] == [line for _, line in taken]
    assert [end for end, _ in lines] == [offset + sum(len(x) for _, x in taken[: i + 1]) for i in range(len(taken))]
    assert new_offset == (lines[-1][0] if lines else offset)

    good, torn = sort_lines(offset, lines)
    expected_good, expected_torn, start = [], [], offset
    for kind, line in taken:
        body = line[:-1]
        if kind == "whole":
            expected_good.append((start, body))
        elif kind == "glued":
            expected_torn.append(body[:20])
            expected_good.append((start, body[20:]))
        elif body.rstrip(b"\r").strip():
            junk = body.rstrip(b"\r")
            (expected_good if junk[:1] == b"{" and junk[-1:] == b"}" else expected_torn).append(
                (start, junk) if junk[:1] == b"{" and junk[-1:] == b"}" else junk
            )
        start += len(line)
    assert torn == expected_torn
    # A glued line's start is where its fragment began: the cursor moves past the whole line.
    assert [body for _, body in good] == [body for _, body in expected_good]
    assert [s for s, _ in good] == [s for s, _ in expected_good]


def test_a_torn_tail_of_a_finished_file_is_handed_on(tmp_path):
    path = tmp_path / "events_20200101.ndjson"  # an earlier day's file: nobody will finish it
    line = whole(1)
    path.write_bytes(line + b'{"v":1,"id":"cut sho')
    os.utime(path, (0, 0))
    lines, offset = read_lines(path, 0, 10)
    assert [body for _, body in lines] == [line[:-1], b'{"v":1,"id":"cut sho']
    assert offset == path.stat().st_size
    assert sort_lines(0, lines)[1] == [b'{"v":1,"id":"cut sho']
