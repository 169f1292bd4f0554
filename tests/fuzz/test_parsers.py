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

from console.app import create_app
from console.core.settings import load_settings
from console.core.timeutil import UTC_FORMAT, format_utc, parse_timestamp
from console.domain import links
from console.domain.hand_check import well_formed_run
from console.domain.spool_lines import (
    KINDS,
    Envelope,
    RunData,
    SpoolLine,
    parse_lines,
    well_formed_envelope,
    well_formed_run_data,
)
from console.domain.validation import STATUS_ALIASES, STATUSES, RunCreate, Status

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


# ---------------------------------------------------------------- envelope fast path

anything = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=12) \
    | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
times = st.one_of(
    aware.map(lambda d: d.isoformat()),
    st.sampled_from(["2026-01-12T10:00:00Z", "2026-01-12 10:00:00+00:00", "2026-01-12T10:00:00", "0999-12-31T23:00:00-05:00",
                     "9998-12-31T23:30:00-01:00", "2026-13-01T00:00:00+00:00", "", "now"]),
    anything,
)
identifiers = st.one_of(clean_text, st.sampled_from(["", "stale", "a\x00b", "x\ud800", " padded "]), anything)


TRICKY = {
    "v": st.one_of(st.sampled_from([0, 2, True, 1.0, "1"]), anything),
    "kind": st.one_of(st.sampled_from(["Run_started", "", "ended"]), anything),
    "ts": times,
    "start_time": times,
    "id": identifiers,
    "event_id": identifiers,
    "run_id": identifiers,
    "agent_name": identifiers,
    "job_type": identifiers,
    "data": st.one_of(st.dictionaries(st.text(max_size=5), st.integers(), max_size=2), anything),
}


@SOME
@given(
    kind=st.sampled_from(KINDS), ts=aware, start_time=aware, line_id=clean_text, event_id=clean_text,
    odd=st.sampled_from(sorted(TRICKY)), data=st.data(),
)
def test_the_hand_checked_envelope_agrees_with_the_model(kind, ts, start_time, line_id, event_id, odd, data):
    item = {"v": 1, "id": line_id, "kind": kind, "ts": ts.isoformat(), "event_id": event_id, "run_id": "run",
            "agent_name": "agent", "job_type": "job", "start_time": start_time.isoformat(), "data": None}
    item[odd] = data.draw(TRICKY[odd])  # one field off the usual path
    _assert_envelope_paths_agree(item)


def _assert_hand_check_agrees(fast, validate, value, as_checked) -> None:
    """`fast` (a hand check's result) never accepts what the model refuses, and equals its result."""
    try:
        model = validate(value)
    except ValidationError:
        assert fast is None
        return
    if fast is not None:
        assert fast == as_checked(model)


def _envelope_fields(envelope: Envelope) -> dict:
    return {name: getattr(envelope, name) for name in Envelope.__slots__}


def _assert_envelope_paths_agree(item: dict) -> None:
    fast = well_formed_envelope(item)
    if fast is not None:
        assert fast.ts.tzinfo is UTC and fast.start_time.tzinfo is UTC
    _assert_hand_check_agrees(fast and _envelope_fields(fast), SpoolLine.model_validate, item,
                              lambda model: _envelope_fields(Envelope.of(model)))


@pytest.mark.parametrize("field, value", [
    ("ts", "9998-12-31T23:30:00-01:00"), ("start_time", "1000-01-01T00:30:00+01:00"), ("ts", "2026-01-12T10:00:00"),
    ("ts", "2026-01-12T10:00:00Z"), ("start_time", 1736676000), ("id", "a\x00b"), ("run_id", "x\ud800"), ("job_type", ""),
    ("event_id", "stale"), ("agent_name", "a" * 1_000_001), ("v", True), ("v", "1"), ("v", 1.0), ("v", 2),
    ("kind", ["run_started"]), ("kind", "Run_started"), ("data", [1]), ("data", "x"),
])
def test_the_hand_checked_envelope_agrees_with_the_model_at_the_edges(field, value):
    item = {"v": 1, "id": "line-1", "kind": "run_started", "ts": "2026-01-12T10:00:00+00:00", "event_id": "e1",
            "run_id": "run", "agent_name": "agent", "job_type": "job", "start_time": "2026-01-12T10:00:00+00:00",
            "data": None, field: value}
    _assert_envelope_paths_agree(item)


def test_the_sdks_lines_take_the_hand_checked_path():
    head = run_head("01a218b4-8700-7bb9-9dcc-a08eb3ac2ba3", "run-1", "agent", "job", "2026-01-12T10:00:00.5+00:00")
    for kind in KINDS:
        item = json.loads(make_line(kind, head, {}))
        assert well_formed_envelope(item) is not None


RUN_DATA_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([2**62, 2**62 + 1, 1.0, 1.5, "3", "", "x\x00"]),
    st.sampled_from(["success", "Success", "failed", "running ", "bogus", "ci", "manual"]),
    st.sampled_from(["2026-01-12T10:00:00+00:00", "2026-01-12T10:00:00", "9998-12-31T23:30:00-01:00", "yesterday"]),
    st.sampled_from(['{"a": 1}', "[1, 2", "plain"]), json_values, clean_text,
)


@SOME
@given(kind=st.sampled_from(["run_started", "run_updated", "run_ended"]),
       fields=st.dictionaries(st.sampled_from(sorted(RunData.model_fields) + ["unknown", "event_type"]),
                              RUN_DATA_VALUES, max_size=6))
def test_the_hand_checked_run_data_agrees_with_the_model(kind, fields):
    _assert_run_data_paths_agree(kind, fields)


def _assert_run_data_paths_agree(kind: str, fields: dict) -> None:
    fast = well_formed_run_data(Envelope("l1", kind, None, "e1", "r1", "a", "j", None, fields))
    _assert_hand_check_agrees(fast, RunData.model_validate, fields,
                              lambda model: {name: getattr(model, name) for name in model.model_fields_set})


@pytest.mark.parametrize("field, value", [
    ("error_summary", "x\x00"), ("host", "x\ud800"), ("error_details", "a" * 1_000_001), ("host", 5),
    ("status", "Success"), ("status", "failed"), ("status", " running"), ("status", 1),
    ("metrics_json", '{"a": 1}'), ("metrics_json", "plain"), ("context_json", {"k": "\x00"}),
    ("context_json", [[[[1]]]]), ("duration_ms", None), ("duration_ms", -1), ("duration_ms", 2**62 + 1),
    ("duration_ms", True), ("duration_ms", 1.0), ("items_failed", "3"), ("end_time", "2026-01-12T10:00:00"),
    ("end_time", "9998-12-31T23:30:00-01:00"), ("created_at", "2026-01-12T10:00:00Z"), ("api_posted", "yes"),
    ("git_commit_source", "ci"), ("git_commit_timestamp", "2026-01-12"), ("unknown", object()),
])
def test_the_hand_checked_run_data_agrees_with_the_model_at_the_edges(field, value):
    _assert_run_data_paths_agree("run_ended", {"status": "success", "duration_ms": 5, field: value})


def test_an_sdk_run_ended_takes_the_hand_checked_path():
    data = {"status": "failure", "end_time": "2026-01-12T10:00:01.5+00:00", "duration_ms": 1500, "items_failed": 1,
            "error_summary": "boom", "metrics_json": {"pages": 3}, "host": "h", "unknown": [1]}
    assert well_formed_run_data(Envelope("l1", "run_ended", None, "e1", "r1", "a", "j", None, data)) == {
        **{k: v for k, v in data.items() if k != "unknown"},
        "end_time": datetime(2026, 1, 12, 10, 0, 1, 500000, tzinfo=UTC),
    }


# ---------------------------------------------------------------- batch records (POST /api/v1/runs/batch)

RUN_RECORD = {"event_id": "e-1", "run_id": "r-1", "agent_name": "agent", "job_type": "job",
              "start_time": "2026-01-12T10:00:00+00:00"}


def _assert_run_paths_agree(item) -> None:
    _assert_hand_check_agrees(well_formed_run(item), RunCreate.model_validate, item, lambda model: model.__dict__)


@SOME
@given(base=st.dictionaries(st.sampled_from(sorted(RUN_RECORD)), st.sampled_from(["keep", "drop"]), max_size=5),
       fields=st.dictionaries(st.sampled_from(sorted(RunCreate.model_fields) + ["unknown"]), RUN_DATA_VALUES,
                              max_size=6))
def test_the_hand_checked_batch_record_agrees_with_the_model(base, fields):
    item = {name: value for name, value in RUN_RECORD.items() if base.get(name) != "drop"}
    item.update(fields)
    _assert_run_paths_agree(item)


@pytest.mark.parametrize("field, value", [
    ("event_id", "stale"), ("event_id", ""), ("event_id", 5), ("run_id", "x\x00"), ("agent_name", None),
    ("job_type", "a" * 1_000_001), ("start_time", None), ("start_time", "2026-01-12T10:00:00"),
    ("start_time", "2026-01-12"), ("start_time", 1736676000), ("start_time", "0999-12-31T23:00:00+00:00"),
    ("status", None), ("status", "failed"), ("status", "Success"), ("status", "success"), ("created_at", None),
    ("created_at", "2026-01-12T10:00:00-05:00"), ("end_time", "9998-12-31T23:30:00-01:00"), ("duration_ms", None),
    ("duration_ms", True), ("duration_ms", 2**62), ("duration_ms", 2**62 + 1), ("items_failed", 1.0),
    ("metrics_json", '{"a": 1}'), ("metrics_json", '{"a": NaN}'), ("metrics_json", {"k": "\x00"}),
    ("context_json", "plain"), ("api_posted", True), ("api_posted", "yes"), ("git_commit_source", "ci"),
    ("git_commit_timestamp", "2026-01-12"), ("error_summary", "x\ud800"), ("host", 5), ("unknown", object()),
])
def test_the_hand_checked_batch_record_agrees_with_the_model_at_the_edges(field, value):
    _assert_run_paths_agree({**RUN_RECORD, "status": "success", field: value})


def test_an_older_clients_record_takes_the_hand_checked_path():
    item = {**RUN_RECORD, "status": "failure", "end_time": "2026-01-12T10:00:01.5+00:00", "duration_ms": 1500,
            "items_discovered": 10, "items_failed": 1, "host": "h", "metrics_json": {"pages": 3},
            "error_summary": "timeout", "schema_version": 7}
    fast = well_formed_run(item)
    assert fast is not None and fast == RunCreate.model_validate(item).__dict__
    assert all(well_formed_run(other) is None for other in (None, [RUN_RECORD], "x", 5))
