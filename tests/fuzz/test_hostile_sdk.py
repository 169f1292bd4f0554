"""Hostile values through the real SDK into the real console: a good line after them always arrives.

Hypothesis puts a hostile value (NaN, infinities, numbers too long for the console,
JSON text that is not strict or nests 3000 deep, NUL, lone surrogates, long keys, deep
nesting) into any field of any line kind, written by `telemetry.TelemetryClient` with a
spool dir of its own and sent by its real sender to `python -m console serve` (the
`console_server` fixture, on SQLite and on PostgreSQL). After the hostile line the same
client writes a good run, which must reach the console within a bounded time; the
console's access log must never show a 5xx. Whatever the SDK does with a refused line
(dead-letters it, or halves a batch to find it), the console answers it as a 4xx or
as a rejection inside a 200.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from telemetry import TelemetryClient
from telemetry.client import shared_sender
from telemetry.config import TelemetryConfig

from console.domain.bounded_json import MAX_FIELD_DEPTH, MAX_INT_DIGITS, MAX_KEY_CHARS

ARRIVAL_GUARD = 60.0  # seconds: a hang guard, far above the second or two a line takes
SERVER_ERROR = re.compile(r'" 5\d\d ')  # the status after the request in the access log

atoms = st.sampled_from([
    math.nan, math.inf, -math.inf,
    10 ** (MAX_INT_DIGITS + 1), -(10 ** 1000), 10 ** 5000,  # the last is past what Python writes
    "a\x00b", "\ud800", "x\udfffy", "[" * 3000 + "]" * 3000, "NaN", "-Infinity", '{"loss": NaN}',
    "1e999", "9" * 5000, '["\\u0000"]', '{"' + "k" * (MAX_KEY_CHARS + 1) + '": 1}',
])
keys = st.sampled_from(["k" * (MAX_KEY_CHARS + 1), "nul\x00key", "\ud800", "ok"])


def nested(value, depth: int):
    for _ in range(depth):
        value = [value]
    return value


hostile = st.one_of(
    atoms,
    st.builds(nested, atoms | st.just(1), st.sampled_from([MAX_FIELD_DEPTH + 1, 100, 900])),
    st.dictionaries(keys, atoms | st.integers(), min_size=1, max_size=3),
    st.lists(atoms, min_size=1, max_size=3),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xDFFF), min_size=1, max_size=20),
)
JSON_FIELDS = ["metrics_json", "context_json"]
TEXT_FIELDS = ["product", "error_summary", "host", "website", "git_branch"]
COUNTER_FIELDS = ["items_discovered", "items_failed", "duration_ms"]
KINDS = ["start_run", "update_run", "end_run", "log_event", "associate_commit"]


def write_hostile(client: TelemetryClient, kind: str, field: str, value) -> None:
    """One line of `kind` with `value` in `field` (the SDK never raises, whatever it writes)."""
    run_id = client.start_run("hostile-agent", "fuzz", **({field: value} if kind == "start_run" else {}))
    if kind == "update_run":
        client.update_run(run_id, **{field: value})
    elif kind == "end_run":
        client.end_run(run_id, "success", **{field: value})
    elif kind == "log_event":
        client.log_event(run_id, value if field == "event_type" else "step", value)
    elif kind == "associate_commit":
        client.associate_commit(run_id, "abcdef1", "llm", commit_author=value, commit_timestamp=value)


def good_run_arrives(url: str, client: TelemetryClient) -> str:
    """Write a good run after the hostile line; return its agent name once the console has it ended."""
    agent = f"good-{uuid.uuid4().hex[:12]}"
    run_id = client.start_run(agent, "fuzz", metrics_json={"fine": 1})
    client.end_run(run_id, "success")
    client.flush(timeout=10)
    deadline = time.monotonic() + ARRIVAL_GUARD
    while time.monotonic() < deadline:
        runs = requests.get(f"{url}/api/v1/runs", params={"agent_name": agent}, timeout=10).json()
        if runs and runs[0]["status"] == "success":
            return agent
        client.flush(timeout=2)
    raise AssertionError(f"the good run {agent} did not reach the console within {ARRIVAL_GUARD} s")


def check(console_server, kind: str, field: str, value) -> None:
    base = Path(tempfile.mkdtemp(prefix="hostile-sdk-"))
    config = TelemetryConfig(metrics_dir=base, api_url=console_server.url, git_detect=False,
                             heartbeat_seconds=0, batch_seconds=0.05, max_backoff=1.0)
    client = TelemetryClient(config=config)
    try:
        write_hostile(client, kind, field, value)
        good_run_arrives(console_server.url, client)
    finally:
        client.close()
        shared_sender(config).stop()
    errors = [line for line in console_server.log_path.read_text(errors="replace").splitlines()
              if SERVER_ERROR.search(line)]
    assert not errors, errors[:5]


def fields_for(kind: str):
    if kind == "log_event":
        return st.sampled_from(["payload", "event_type"])
    if kind == "associate_commit":
        return st.just("commit_author")
    return st.sampled_from(JSON_FIELDS + TEXT_FIELDS + COUNTER_FIELDS)


line_cases = st.sampled_from(KINDS).flatmap(lambda kind: st.tuples(st.just(kind), fields_for(kind), hostile))
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
MANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


@FEW
@given(case=line_cases)
@example(case=("update_run", "metrics_json", "[" * 3000 + "]" * 3000))  # was a 500 (RecursionError)
@example(case=("log_event", "payload", math.nan))  # JSONB refuses NaN
@example(case=("start_run", "context_json", {"big": 10 ** (MAX_INT_DIGITS + 1)}))
@example(case=("end_run", "error_summary", "a\x00b"))  # PostgreSQL text refuses NUL
def test_a_good_line_after_hostile_ones_reaches_the_console_which_never_answers_5xx(console_server, case):
    check(console_server, *case)


@pytest.mark.soak
@MANY
@given(case=line_cases)
def test_soak_a_good_line_after_hostile_ones_reaches_the_console(console_server, case):
    check(console_server, *case)
