"""Fault 2: the console is down for the whole of an agent's run and started afterwards.

Everything arrives once it is up, and the agent's calls were no slower than with the
console up (figures recorded; the bound asserted is a generous 10x on p99).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.reliability.support import (
    agent_env,
    make_console,
    percentile,
    record_figures,
    sqlite_env,
    sqlite_rows,
    telemetry_cli,
)

pytestmark = pytest.mark.reliability

TIMED_AGENT = r"""
import json, sys, time
from telemetry import TelemetryClient

runs, events = int(sys.argv[1]), int(sys.argv[2])
client = TelemetryClient()
timings = {"start_run": [], "log_event": [], "end_run": []}
clock = time.perf_counter_ns
wall = time.monotonic()
for r in range(runs):
    t = clock(); run_id = client.start_run("down-agent", "timed", run_id=f"timed-{sys.argv[3]}-{r}")
    timings["start_run"].append(clock() - t)
    for i in range(events):
        t = clock(); client.log_event(run_id, "step", {"i": i}); timings["log_event"].append(clock() - t)
    t = clock(); client.end_run(run_id, status="success", items_succeeded=events)
    timings["end_run"].append(clock() - t)
    time.sleep(0.1)  # the agent's own work: the sender gets time to try (and back off)
work = time.monotonic() - wall
print(json.dumps({"timings": timings, "work_seconds": work, "status": client.status()}), flush=True)
"""


def timed_agent(base, url, runs, events, tag):
    out = subprocess.run([sys.executable, "-c", TIMED_AGENT, str(runs), str(events), tag],
                         env=agent_env(base, url, TELEMETRY_FLUSH_TIMEOUT="2"), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def summary(result) -> dict:
    """p50/p99 per call, without each call's first use (it opens the spool and starts the sender)."""
    out = {}
    for call, values in result["timings"].items():
        micro = [v / 1000 for v in values[1:]]
        out[call] = {"n": len(values), "p50_us": round(percentile(micro, 50), 1), "p99_us": round(percentile(micro, 99), 1)}
    return out


def check_console_down_for_a_whole_run(tmp_path, sqlite_template, consoles, runs, events, name):
    env = sqlite_env(sqlite_template, tmp_path)
    console = make_console(env, tmp_path)
    consoles.append(console)

    # Console down: nothing listens on its port for the whole run.
    down_base = tmp_path / "down-base"
    down = timed_agent(down_base, console.url, runs, events, "down")
    assert down["status"]["records_lost"] == 0
    handed = runs * (events + 2)
    assert down["status"]["records_spooled"] == handed

    console.start()
    # The same agent with the console up, for comparison.
    up = timed_agent(tmp_path / "up-base", console.url, runs, events, "up")
    sync = telemetry_cli(down_base, console.url, "sync", "--timeout", "120")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert telemetry_cli(tmp_path / "up-base", console.url, "sync", "--timeout", "120").returncode == 0

    db = env["TELEMETRY_DB_PATH"]
    rows = sqlite_rows(db, "SELECT run_id, status, items_succeeded FROM agent_runs WHERE run_id LIKE 'timed-down-%'")
    assert len(rows) == runs and all(r[1] == "success" and r[2] == events for r in rows)
    stored = sqlite_rows(db, "SELECT count(*), count(DISTINCT e.uid) FROM run_events e JOIN agent_runs r "
                             "ON r.event_id = e.event_id WHERE r.run_id LIKE 'timed-down-%'")[0]
    assert stored == (runs * events, runs * events)

    down_s, up_s = summary(down), summary(up)
    # Generous bounds: timing on a shared 2-core box is noisy; the figures go to the report.
    # 20 start/end calls make their p99 a single outlier, so those are compared by median.
    for call in ("start_run", "log_event", "end_run"):
        assert down_s[call]["p50_us"] <= max(3 * up_s[call]["p50_us"], 500), (call, down_s, up_s)
    assert down_s["log_event"]["p99_us"] <= max(10 * up_s["log_event"]["p99_us"], 5000), (down_s, up_s)
    record_figures(name, {"runs": runs, "events_per_run": events, "records_handed": handed,
                          "records_delivered_after_start": sync.stdout.strip(), "records_lost": 0,
                          "console_down": down_s, "console_up": up_s,
                          "work_seconds_down": round(down["work_seconds"], 3),
                          "work_seconds_up": round(up["work_seconds"], 3)})


def test_console_down_for_a_whole_run_everything_arrives_and_calls_stay_fast(tmp_path, sqlite_template, consoles):
    check_console_down_for_a_whole_run(tmp_path, sqlite_template, consoles, runs=20, events=250, name="console_down")


@pytest.mark.soak
def test_soak_console_down_for_a_long_run(tmp_path, sqlite_template, consoles):
    check_console_down_for_a_whole_run(tmp_path, sqlite_template, consoles, runs=200, events=1000,
                                       name="console_down_soak")
