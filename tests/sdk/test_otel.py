"""OpenTelemetry: the span current at a run's start is recorded in its context_json; optional."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import wait_for
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from telemetry import TelemetryClient


def started(base):
    lines = []
    for path in sorted((base / "raw").glob("events_*.ndjson")):
        lines.extend(json.loads(x) for x in path.read_text().splitlines() if x)
    return [line["data"] for line in lines if line["kind"] == "run_started"]


@pytest.fixture
def tracer():
    return TracerProvider().get_tracer("test_otel")  # its own provider: no global state


def hex_ids(span):
    context = span.get_span_context()
    return {"otel_trace_id": format(context.trace_id, "032x"), "otel_span_id": format(context.span_id, "016x")}


def test_start_run_and_track_run_record_the_current_span(sdk_env, tracer):
    client = TelemetryClient()
    with tracer.start_as_current_span("outer") as outer:
        client.start_run("a", "j")
        with tracer.start_as_current_span("inner") as inner:
            with client.track_run("a", "tracked"):
                pass
    first, second = started(sdk_env)
    assert first["context_json"] == hex_ids(outer)
    assert second["context_json"] == hex_ids(inner)
    assert len(first["context_json"]["otel_trace_id"]) == 32 and len(first["context_json"]["otel_span_id"]) == 16
    assert first["context_json"]["otel_trace_id"] == second["context_json"]["otel_trace_id"]
    assert int(first["context_json"]["otel_span_id"], 16) != 0


def test_the_callers_context_is_kept_and_wins(sdk_env, tracer):
    client = TelemetryClient()
    with tracer.start_as_current_span("s") as span:
        client.start_run("a", "j", context_json={"ticket": "T-1"})
        client.start_run("a", "j", context_json={"otel_span_id": "mine"})
        client.start_run("a", "j", context_json="not an object")
    first, second, third = started(sdk_env)
    assert first["context_json"] == dict(hex_ids(span), ticket="T-1")
    assert second["context_json"]["otel_span_id"] == "mine"
    assert second["context_json"]["otel_trace_id"] == hex_ids(span)["otel_trace_id"]
    assert third["context_json"] == "not an object"


def test_no_current_span_or_an_invalid_one_adds_nothing(sdk_env):
    client = TelemetryClient()
    client.start_run("a", "j")
    # The API's tracer without an SDK provider gives non-recording spans with invalid ids.
    with trace.NoOpTracerProvider().get_tracer("x").start_as_current_span("noop"):
        with client.track_run("a", "j"):
            pass
    with trace.use_span(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)):
        client.start_run("a", "j")
    assert [data.get("context_json") for data in started(sdk_env)] == [None, None, None]


def test_the_run_ends_outside_the_span_with_its_ids_kept(sdk_env, tracer):
    client = TelemetryClient()
    with tracer.start_as_current_span("s") as span:
        run_id = client.start_run("a", "j")
    client.end_run(run_id)
    (data,) = started(sdk_env)
    assert data["context_json"] == hex_ids(span)


HIDDEN = textwrap.dedent(
    """
    import json, sys
    {hide}
    from telemetry import TelemetryClient
    client = TelemetryClient()
    with client.track_run("a", "j") as ctx:
        ctx.log_event("e")
    status = client.status()
    print(json.dumps({{"spooled": status["records_spooled"], "errors": status["internal_errors"],
                      "otel_loaded": sorted(m for m, mod in sys.modules.items()
                                            if m.startswith("opentelemetry") and mod is not None)}}))
    """
)


@pytest.mark.parametrize(
    "hide",
    [
        "sys.modules['opentelemetry'] = None",
        # A meta-path blocker: any opentelemetry import fails as if it were not installed.
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())",
        "",  # installed but never imported by the agent: the SDK does not import it either
    ],
)
def test_without_opentelemetry_the_sdk_works_and_adds_nothing(sdk_env, hide):
    script = HIDDEN.format(hide=hide)
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"spooled": 3, "errors": 0, "otel_loaded": []}
    (data,) = started(sdk_env)
    assert "context_json" not in data


def test_the_console_stores_the_span_ids_in_the_runs_context(sdk_env, console, tracer, monkeypatch):
    monkeypatch.setenv("TELEMETRY_API_URL", console.url)
    client = TelemetryClient()
    with tracer.start_as_current_span("s") as span:
        with client.track_run("otel-agent", "job") as ctx:
            event_id = ctx.event_id
    assert client.flush(30) == 0
    run = wait_for(lambda: console.run(event_id))
    assert run["context_json"] == hex_ids(span)
