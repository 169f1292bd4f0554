"""Property-based tests (hypothesis) of the parsers at the edges: timestamps, statuses, URLs, spool lines.

Bounded example counts keep `make test` quick; `make soak` (TELEMETRY_SOAK=1) runs
the same properties with many more examples.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from telemetry.models import normalize_status
from telemetry.spool import make_line, read_lines, run_head

from console import create_app, links
from console.ingest import KINDS, parse_lines
from console.settings import load_settings
from console.timeutil import UTC_FORMAT, format_utc, parse_timestamp
from console.validation import STATUS_ALIASES, STATUSES, Status

SOAK = os.environ.get("TELEMETRY_SOAK") == "1"
FEW = settings(max_examples=2000 if SOAK else 150, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SOME = settings(max_examples=500 if SOAK else 60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

aware = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30)),
                                                timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
clean_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
clean_text = st.text(alphabet=clean_chars, min_size=1, max_size=40)
# What the console stores faithfully: no NUL, no lone surrogate (a payload holding one is dead-lettered).
clean_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=clean_chars, max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet=clean_chars, max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)


# ---------------------------------------------------------------- timestamps


@FEW
@given(aware, st.sampled_from(["iso", "Z", "space", "compact-offset"]))
def test_every_written_form_of_an_aware_time_parses_back_to_the_same_instant(moment, form):
    text = moment.isoformat()
    if form == "Z" and moment.utcoffset() == timedelta(0):
        text = text.replace("+00:00", "Z")
    elif form == "space":
        text = text.replace("T", " ", 1)
    elif form == "compact-offset":
        text = text[:-3] + text[-2:]  # +05:30 -> +0530
    parsed = parse_timestamp(text)
    assert parsed == moment and parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)


@FEW
@given(aware, aware)
def test_the_stored_text_form_sorts_like_the_instants(a, b):
    ta, tb = format_utc(a), format_utc(b)
    assert len(ta) == len(tb) == 32 and datetime.strptime(ta, UTC_FORMAT)
    assert (ta < tb) == (a < b) and (ta == tb) == (a == b)


@FEW
@given(st.one_of(st.text(max_size=70), st.from_regex(r"\A[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}([T ][0-9:.]{0,15})?"
                                                     r"(Z|[+-][0-9]{2}:?[0-9]{2})?\Z")),
       st.booleans())
def test_any_text_is_a_utc_time_or_a_value_error_never_another_exception(text, require_zone):
    try:
        parsed = parse_timestamp(text, require_zone=require_zone)
    except ValueError:
        return
    assert parsed.utcoffset() == timedelta(0)


@pytest.fixture(scope="module")
def api_client(sqlite_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "telemetry.sqlite"
    shutil.copy(sqlite_template, path)
    app = create_app(load_settings({"TELEMETRY_DB_PATH": str(path), "TELEMETRY_SECRET_KEY": "fuzz",
                                    "TELEMETRY_BASE_DIR": str(path.parent)}), {"TESTING": True})
    yield app.test_client()
    app.extensions["telemetry_db"].dispose()


@SOME
@given(st.sampled_from(["/api/v1/runs?created_after=", "/api/v1/runs?created_before=",
                        "/api/v1/runs?start_time_from=", "/api/v1/runs?start_time_to=", "/api/v1/stats?since=",
                        "/?range=", "/runs/new?after="]),
       st.one_of(aware.map(lambda d: d.isoformat()), st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"),
                 st.just("0001-01-01T00:00:00+01:00"), st.just("9999-12-31T23:59:59-01:00"),
                 st.text(max_size=40)))
def test_any_time_filter_is_answered_below_500(api_client, prefix, value):
    from urllib.parse import quote

    resp = api_client.get(prefix + quote(value, safe=""))
    assert resp.status_code < 500, (prefix, value, resp.get_data(as_text=True)[:200])


# ---------------------------------------------------------------- statuses

status_ish = st.one_of(st.sampled_from([*STATUSES, *STATUS_ALIASES]).flatmap(
    lambda s: st.sampled_from([s, s.upper(), s.title(), f"  {s} ", s + "x"])), st.text(max_size=12))


@FEW
@given(status_ish)
def test_the_sdk_and_the_console_normalise_every_status_the_same_way(value):
    sdk = normalize_status(value)
    try:
        console = TypeAdapter(Status).validate_python(value)
    except ValidationError:
        console = None
    assert sdk == console, (value, sdk, console)
    assert sdk is None or sdk in STATUSES


# ---------------------------------------------------------------- URL building

segment = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=20).filter(
    lambda s: s not in (".", "..") and not s.endswith(".git"))
sha = st.text(alphabet="0123456789abcdef", min_size=7, max_size=40)


@FEW
@given(st.sampled_from([("github.com", "/commit/"), ("gitlab.com", "/-/commit/"), ("bitbucket.org", "/commits/")]),
       segment, segment, sha, st.sampled_from(["https", "ssh", "scp", "https-user"]), st.booleans())
def test_commit_and_repo_urls_for_every_spelling_of_a_known_host(host_path, owner, repo, commit, form, dotgit):
    host, commit_path = host_path
    suffix = ".git" if dotgit else ""
    spelled = {"https": f"https://{host}/{owner}/{repo}{suffix}", "ssh": f"ssh://git@{host}/{owner}/{repo}{suffix}",
               "scp": f"git@{host}:{owner}/{repo}{suffix}",
               "https-user": f"https://bot:tok@{host}/{owner}/{repo}{suffix}"}[form]
    assert links.repo_url(spelled) == f"https://{host}/{owner}/{repo}"
    assert links.commit_url(spelled, commit) == f"https://{host}/{owner}/{repo}{commit_path}{commit}"


@FEW
@given(st.text(max_size=80), st.one_of(st.none(), st.text(max_size=50)))
def test_any_repo_text_gives_a_link_to_a_known_host_or_none_and_never_raises(repo, commit):
    for url in (links.repo_url(repo), links.commit_url(repo, commit)):
        if url is not None:
            assert url.startswith(("https://github.com/", "https://gitlab.com/", "https://bitbucket.org/")), url
            assert "tok@" not in url and "@" not in url.split("/", 3)[2]  # credentials never copied into a link


# ---------------------------------------------------------------- spool lines


@FEW
@given(st.lists(st.one_of(json_values, st.fixed_dictionaries({"v": st.integers(-2, 3), "id": st.text(max_size=5),
                                                              "kind": st.sampled_from([*KINDS, "bogus"])},
                                                             optional={"data": json_values, "ts": st.text(max_size=30)})),
                max_size=8))
def test_the_ingest_parser_judges_every_line_and_never_raises(document):
    good, rejected = parse_lines(document)
    assert sorted([g.index for g in good] + [r["index"] for r in rejected]) == list(range(len(document)))
    for r in rejected:
        assert r["detail"] and set(r) == {"index", "id", "detail"}
        json.dumps(r)  # answerable as JSON


@FEW
@given(st.sampled_from(["run_started", "run_updated", "run_ended", "event", "commit", "heartbeat"]), clean_text,
       clean_text, clean_json)
def test_every_line_the_sdk_writes_is_a_line_the_console_accepts(kind, agent, job, payload):
    start = datetime.now(UTC).isoformat()
    head = run_head("evt-1", "run-1", agent, job, start)
    data = {"run_started": {"status": "running", "product": agent}, "run_updated": {"items_discovered": 3},
            "run_ended": {"status": "success", "output_summary": job}, "heartbeat": {},
            "event": {"event_type": agent, "payload": payload},
            "commit": {"commit_hash": "a1b2c3d", "commit_source": "llm", "commit_author": agent}}[kind]
    line = make_line(kind, head, data)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line, whatever the text holds
    good, rejected = parse_lines([json.loads(line)])
    assert not rejected and good[0].envelope.kind == kind and good[0].envelope.agent_name == agent


@FEW
@given(st.lists(st.binary(max_size=40), max_size=10), st.integers(1, 5))
def test_the_spool_reader_returns_whole_lines_only_and_always_moves_forward(chunks, limit):
    data = b"".join(chunks)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"events_{datetime.now(UTC):%Y%m%d}.ndjson"  # today's: a writer may finish the tail
        path.write_bytes(data)
        check_reader(path, data, limit)


def check_reader(path: Path, data: bytes, limit: int) -> None:
    offset, seen = 0, []
    for _ in range(len(data) + 2):
        lines, new = read_lines(path, offset, limit)
        assert new >= offset and len(lines) <= limit
        for end, line in lines:
            assert data[end - 1:end] == b"\n" and b"\n" not in line
        seen.extend(line for _, line in lines)
        if new == offset:
            break
        offset = new
    assert seen == data.split(b"\n")[:-1]  # every complete line once; an unterminated tail waits


@pytest.mark.soak
def test_soak_every_property_with_many_more_examples(api_client):
    """`make soak` runs each property above again; with TELEMETRY_SOAK=1 they draw 2,000 (or 500) examples."""
    assert SOAK
    for prop in (test_every_written_form_of_an_aware_time_parses_back_to_the_same_instant,
                 test_the_stored_text_form_sorts_like_the_instants,
                 test_any_text_is_a_utc_time_or_a_value_error_never_another_exception,
                 test_the_sdk_and_the_console_normalise_every_status_the_same_way,
                 test_commit_and_repo_urls_for_every_spelling_of_a_known_host,
                 test_any_repo_text_gives_a_link_to_a_known_host_or_none_and_never_raises,
                 test_the_ingest_parser_judges_every_line_and_never_raises,
                 test_every_line_the_sdk_writes_is_a_line_the_console_accepts,
                 test_the_spool_reader_returns_whole_lines_only_and_always_moves_forward):
        prop()
    test_any_time_filter_is_answered_below_500(api_client)
