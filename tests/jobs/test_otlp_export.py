"""OTLP export against a loopback receiver that decodes each request with opentelemetry-proto."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from console.core.settings import SettingsError, load_settings
from console.core.timeutil import utcnow
from console.jobs import export, otlp
from console.jobs.tables import export_state
from console.store.models import run_events
from tests.jobs.conftest import insert_runs, run_row

ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """An OTLP/HTTP traces endpoint: decodes each body; answers the next scripted code (default 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                          "path": self.path, "request": request})
                answer = receiver.script.pop(0) if receiver.script else 200
                payload = ExportTraceServiceResponse()
                if answer == "partial":
                    answer = 200
                    payload.partial_success.CopyFrom(ExportTracePartialSuccess(rejected_spans=1,
                                                                               error_message="span too old"))
                data = payload.SerializeToString()
                self.send_response(answer)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/traces"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def spans(self) -> dict[str, tuple]:
        """event_id -> (resource attributes, span), over every request received."""
        out = {}
        for received in self.requests:
            for resource_spans in received["request"].resource_spans:
                resource = {kv.key: kv.value for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out[attrs(span)["telemetry.event_id"].string_value] = (resource, span)
        return out

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def attrs(item) -> dict:
    return {kv.key: kv.value for kv in item.attributes}


def nanos(value: datetime) -> int:
    return int((value - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def insert_each(db, rows):
    """Rows with different columns, one insert each."""
    for row in rows:
        insert_runs(db, [row])


def no_sleep(seconds: float) -> None:
    pass


def first_pass(db, settings, t0):
    """The destination appears at t0 (runs ending later are exported)."""
    export.export_pending(db, settings, sleep=no_sleep, now=t0)


def add_event(db, row, event_type, at, payload):
    db.write(lambda s: s.execute(run_events.insert().values(
        event_id=row["event_id"], run_id=row["run_id"], event_type=event_type, timestamp=at, payload_json=payload,
        uid=str(uuid.uuid4()), created_at=at)))


def test_parent_child_and_grandchild_share_a_trace_with_events_and_attributes(db, make_settings, receiver):
    settings = make_settings(TELEMETRY_EXPORT_OTLP_ENDPOINT=receiver.url,
                             TELEMETRY_EXPORT_OTLP_HEADERS="Authorization=Bearer%20abc,x-tenant=t1")
    t0 = utcnow()
    first_pass(db, settings, t0)
    at = t0 + timedelta(seconds=1)
    parent = run_row(run_id="p", agent_name="planner", created_at=at, host="box-1", environment="prod",
                     git_repo="https://github.com/acme/app", git_branch="main", git_commit_hash="abc123",
                     items_discovered=7, items_succeeded=5, items_failed=2)
    child = run_row(run_id="c", agent_name="worker", parent_run_id="p", created_at=at + timedelta(seconds=1),
                    status="failure", error_summary="disk full")
    grandchild = run_row(run_id="g", agent_name="worker", parent_run_id="c", created_at=at + timedelta(seconds=2),
                         status="timeout")
    # A later run reusing run_id "p" started after the child: the child's parent is still the first.
    reused = run_row(run_id="p", agent_name="planner", created_at=at + timedelta(minutes=1))
    insert_each(db, [parent, child, grandchild, reused])
    step_at = at + timedelta(milliseconds=1234, microseconds=567)
    add_event(db, child, "fetch", step_at, {"url": "https://x", "bytes": 12, "ok": True, "tags": ["a"]})
    add_event(db, child, "parse", step_at + timedelta(seconds=3), None)

    counts = export.export_pending(db, settings, sleep=no_sleep, now=at + timedelta(minutes=2))

    assert counts["posted"] == 4 and counts["waiting"] == 0
    for received in receiver.requests:
        assert received["path"] == "/v1/traces"
        assert received["headers"]["content-type"] == "application/x-protobuf"
        assert received["headers"]["authorization"] == "Bearer abc" and received["headers"]["x-tenant"] == "t1"
    spans = receiver.spans()
    (p_res, p), (c_res, c), (g_res, g) = (spans[r["event_id"]] for r in (parent, child, grandchild))
    assert len({p.trace_id, c.trace_id, g.trace_id}) == 1 and len(p.trace_id) == 16
    assert p.parent_span_id == b"" and c.parent_span_id == p.span_id and g.parent_span_id == c.span_id
    assert len({p.span_id, c.span_id, g.span_id}) == 3
    _, reused_span = spans[reused["event_id"]]
    assert attrs(reused_span)["telemetry.run_id"].string_value == "p"
    assert reused_span.trace_id != p.trace_id  # its own topmost run: a different trace

    assert p_res["service.name"].string_value == "planner" and c_res["service.name"].string_value == "worker"
    pa = attrs(p)
    assert pa["host.name"].string_value == "box-1" and pa["deployment.environment.name"].string_value == "prod"
    assert pa["telemetry.job_type"].string_value == "crawl" and p.name == "crawl"
    assert (pa["telemetry.items_discovered"].int_value, pa["telemetry.items_failed"].int_value) == (7, 2)
    assert pa["vcs.repository.url.full"].string_value == "https://github.com/acme/app"
    assert pa["vcs.ref.head.name"].string_value == "main" and pa["vcs.ref.head.revision"].string_value == "abc123"
    assert p.start_time_unix_nano == nanos(parent["start_time"]) and p.end_time_unix_nano == nanos(parent["end_time"])

    assert p.status.code == Status.STATUS_CODE_UNSET
    assert (c.status.code, c.status.message) == (Status.STATUS_CODE_ERROR, "disk full")
    assert g.status.code == Status.STATUS_CODE_ERROR and g.status.message == "timeout"

    assert [e.name for e in c.events] == ["fetch", "parse"]
    assert [e.time_unix_nano for e in c.events] == [nanos(step_at), nanos(step_at + timedelta(seconds=3))]
    fetch = attrs(c.events[0])
    assert (fetch["url"].string_value, fetch["bytes"].int_value, fetch["ok"].bool_value) == ("https://x", 12, True)
    assert fetch["tags"].string_value == '["a"]'

    with db.read() as session:
        assert set(session.execute(sa.select(export_state.c.state)).scalars()) == {"posted"}


def test_recorded_otel_ids_are_kept_and_children_join_that_trace(db, make_settings, receiver):
    settings = make_settings(TELEMETRY_EXPORT_OTLP_ENDPOINT=receiver.url)
    t0 = utcnow()
    first_pass(db, settings, t0)
    at = t0 + timedelta(seconds=1)
    trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    agent = run_row(run_id="agent", created_at=at, context_json={"otel_trace_id": trace.upper(), "otel_span_id": span})
    child = run_row(run_id="sub", parent_run_id="agent", created_at=at + timedelta(seconds=1))
    bad = [run_row(run_id=f"bad{i}", created_at=at, context_json=context) for i, context in enumerate([
        {"otel_trace_id": "0" * 32, "otel_span_id": span},
        {"otel_trace_id": trace[:-1], "otel_span_id": span},
        {"otel_trace_id": "zz" * 16, "otel_span_id": span},
        {"otel_trace_id": trace},
        {"otel_trace_id": 12, "otel_span_id": ["x"]},
        ["not", "an", "object"],
    ])]
    insert_each(db, [agent, child, *bad])
    export.export_pending(db, settings, sleep=no_sleep, now=at + timedelta(minutes=1))
    spans = receiver.spans()
    _, a = spans[agent["event_id"]]
    _, c = spans[child["event_id"]]
    assert (a.trace_id.hex(), a.span_id.hex()) == (trace, span)
    assert c.trace_id.hex() == trace and c.parent_span_id.hex() == span and c.span_id.hex() != span
    for row in bad:  # invalid ids fall back to derived ones
        _, s = spans[row["event_id"]]
        assert s.trace_id.hex() != trace and any(s.trace_id) and any(s.span_id)
        assert s.trace_id == otlp.derived_trace_id(row["event_id"])


def test_a_child_waits_for_its_parent_then_lands_in_its_trace(db, make_settings, receiver):
    settings = make_settings(TELEMETRY_EXPORT_OTLP_ENDPOINT=receiver.url)
    t0 = utcnow()
    first_pass(db, settings, t0)
    at = t0 + timedelta(seconds=1)
    child = run_row(run_id="late-child", parent_run_id="late-parent", created_at=at)
    insert_runs(db, [child])

    counts = export.export_pending(db, settings, sleep=no_sleep, now=at + timedelta(seconds=30))
    assert counts["waiting"] == 1 and counts["posted"] == 0 and receiver.requests == []
    with db.read() as session:  # no attempt spent while waiting
        assert session.execute(sa.select(sa.func.count()).select_from(export_state)).scalar() == 0

    parent = run_row(run_id="late-parent", created_at=at - timedelta(milliseconds=500))
    insert_runs(db, [parent])
    counts = export.export_pending(db, settings, sleep=no_sleep, now=at + timedelta(seconds=60))
    assert counts["posted"] == 2 and counts["waiting"] == 0
    spans = receiver.spans()
    _, p = spans[parent["event_id"]]
    _, c = spans[child["event_id"]]
    assert c.trace_id == p.trace_id and c.parent_span_id == p.span_id


def test_an_orphan_is_exported_alone_after_the_wait(db, make_settings, receiver):
    settings = make_settings(TELEMETRY_EXPORT_OTLP_ENDPOINT=receiver.url)
    t0 = utcnow()
    first_pass(db, settings, t0)
    at = t0 + timedelta(seconds=1)
    orphan = run_row(run_id="orphan", parent_run_id="never-stored", created_at=at)
    insert_runs(db, [orphan])
    # The scan watermark passes runs quiet for SETTLED_AFTER: a waiting run must be exported before that.
    assert otlp.PARENT_WAIT < export.SETTLED_AFTER
    just_before = at + otlp.PARENT_WAIT - timedelta(seconds=1)
    assert export.export_pending(db, settings, sleep=no_sleep, now=just_before)["waiting"] == 1
    counts = export.export_pending(db, settings, sleep=no_sleep, now=at + otlp.PARENT_WAIT + timedelta(seconds=1))
    assert counts["posted"] == 1
    _, span = receiver.spans()[orphan["event_id"]]
    assert span.parent_span_id == b"" and span.trace_id == otlp.derived_trace_id(orphan["event_id"])


def test_cycles_and_self_parents_end_the_chain(db, make_settings, receiver):
    settings = make_settings(TELEMETRY_EXPORT_OTLP_ENDPOINT=receiver.url)
    t0 = utcnow()
    first_pass(db, settings, t0)
    at = t0 + timedelta(seconds=1)
    a = run_row(run_id="a", parent_run_id="b", created_at=at)
    b = run_row(run_id="b", parent_run_id="a", created_at=at + timedelta(seconds=1))
    me = run_row(run_id="me", parent_run_id="me", created_at=at)
    insert_each(db, [a, b, me])
    counts = export.export_pending(db, settings, sleep=no_sleep, now=at + timedelta(seconds=10))
    assert counts["posted"] == 3 and counts["waiting"] == 0
    spans = receiver.spans()
    span_a, span_b = spans[a["event_id"]][1], spans[b["event_id"]][1]
    assert span_a.trace_id == span_b.trace_id
    # The lower event_id is the top of the cycle; the other is its child.
    top, other = (span_a, span_b) if a["event_id"] < b["event_id"] else (span_b, span_a)
    assert top.parent_span_id == b"" and other.parent_span_id == top.span_id
    assert spans[me["event_id"]][1].parent_span_id == b""


def test_partial_success_and_4xx_are_rejected_and_5xx_retried(db, make_settings, receiver):
    settings = make_settings(TELEMETRY_EXPORT_OTLP_ENDPOINT=receiver.url)
    t0 = utcnow()
    first_pass(db, settings, t0)
    rows = [run_row(run_id=name, created_at=t0 + timedelta(seconds=1)) for name in ("partial", "bad", "flaky")]
    insert_runs(db, rows)
    receiver.script = ["partial", 400, 503, 200]  # runs are taken in the order stored
    counts = export.export_pending(db, settings, sleep=no_sleep, now=t0 + timedelta(seconds=5))
    assert (counts["posted"], counts["rejected"], counts["tries"]) == (1, 2, 4)
    with db.read() as session:
        states = {row.event_id: row for row in session.execute(sa.select(export_state))}
    partial, bad, flaky = (states[r["event_id"]] for r in rows)
    assert partial.state == "rejected" and "span too old" in partial.last_error
    assert (bad.state, bad.last_status) == ("rejected", 400)
    assert (flaky.state, flaky.tries) == ("posted", 2)


def test_many_events_are_capped_and_counted_as_dropped(db, make_settings, receiver):
    settings = make_settings(TELEMETRY_EXPORT_OTLP_ENDPOINT=receiver.url)
    t0 = utcnow()
    first_pass(db, settings, t0)
    row = run_row(run_id="chatty", created_at=t0 + timedelta(seconds=1))
    insert_runs(db, [row])
    db.write(lambda s: s.execute(run_events.insert(), [
        {"event_id": row["event_id"], "run_id": "chatty", "event_type": "step",
         "timestamp": row["start_time"] + timedelta(microseconds=i),
         "payload_json": {"i": i, "big": 2**70, "k" * 1000: "v" * 10_000},
         "uid": str(uuid.uuid4()), "created_at": row["start_time"]} for i in range(otlp.MAX_EVENTS + 5)]))
    export.export_pending(db, settings, sleep=no_sleep, now=t0 + timedelta(seconds=5))
    _, span = receiver.spans()[row["event_id"]]
    assert len(span.events) == otlp.MAX_EVENTS and span.dropped_events_count == 5
    first = attrs(span.events[0])
    assert first["big"].string_value == str(2**70)  # past int64: text
    assert first["k" * otlp.MAX_KEY_CHARS].string_value == "v" * otlp.MAX_VALUE_CHARS


@pytest.mark.parametrize("value", ["novalue", "=x", "a b=c", "k=", "k=v%0d%0aInjected: 1"])
def test_bad_otlp_headers_are_refused_without_echoing_the_secret(value):
    with pytest.raises(SettingsError) as caught:
        load_settings({"TELEMETRY_EXPORT_OTLP_HEADERS": value})
    assert "TELEMETRY_EXPORT_OTLP_HEADERS" in str(caught.value) and value not in str(caught.value)


@pytest.mark.parametrize("value", ["localhost:4318/v1/traces", "ftp://x/v1/traces", "http:///v1/traces"])
def test_a_bad_endpoint_is_refused(value):
    with pytest.raises(SettingsError, match="TELEMETRY_EXPORT_OTLP_ENDPOINT"):
        load_settings({"TELEMETRY_EXPORT_OTLP_ENDPOINT": value})


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": f"{ROOT / 'sdk'}:{ROOT}", **env}
    return subprocess.run([sys.executable, "-m", "console", *args], env=full, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_cli_masks_the_headers_and_export_sends_to_otlp(db, env, receiver):
    otel_env = {**env, "TELEMETRY_EXPORT_OTLP_ENDPOINT": receiver.url,
                "TELEMETRY_EXPORT_OTLP_HEADERS": "api-key=very-secret-value"}
    shown = _cli(otel_env, "settings")
    assert shown.returncode == 0, shown.stderr
    assert "very-secret-value" not in shown.stdout and "TELEMETRY_EXPORT_OTLP_HEADERS" in shown.stdout
    assert receiver.url in shown.stdout

    row = run_row(run_id="from-cli", created_at=utcnow() - timedelta(days=1))
    insert_runs(db, [row])
    done = _cli(otel_env, "export", "--backfill")
    assert done.returncode == 0, done.stderr
    (received,) = receiver.requests
    assert received["headers"]["api-key"] == "very-secret-value"
    assert row["event_id"] in receiver.spans()
