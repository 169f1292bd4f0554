"""Fault 1: agent processes SIGKILLed at random moments, then `telemetry sync`.

Every record whose SDK call had returned is in the console exactly once, and every
run of a killed agent is either ended or listed by the stale endpoint.

Each agent appends what its SDK calls returned to a side log (one line per call,
written after the call returned, with one os.write on an O_APPEND descriptor: the
OS has it when the agent is killed, like the spool itself).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.reliability.support import (
    agent_env,
    integrity_check,
    make_console,
    record_figures,
    sqlite_env,
    sqlite_rows,
    stale_event_ids,
    telemetry_cli,
)

pytestmark = pytest.mark.reliability

AGENT = r"""
import os, sys, time
from telemetry import TelemetryClient

agent, side_path = sys.argv[1], sys.argv[2]
side = os.open(side_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

def handed(*fields):
    os.write(side, (" ".join(str(f) for f in fields) + "\n").encode())

client = TelemetryClient()
for r in range(1000):
    run_id = f"{agent}-run{r}"
    client.start_run(agent, "reliability", run_id=run_id, environment="kill-test")
    handed("start", run_id)
    for i in range(20):
        client.log_event(run_id, "step", {"agent": agent, "run": r, "i": i})
        handed("event", run_id, i)
        time.sleep(0.002)
    client.update_run(run_id, items_discovered=20)
    handed("update", run_id)
    client.end_run(run_id, status="success", items_succeeded=20)
    handed("end", run_id)
"""


def run_killed_agents(tmp_path, sqlite_template, consoles, agents: int, max_life: float, name: str) -> dict:
    env = sqlite_env(sqlite_template, tmp_path, "WAL", "NORMAL")
    console = make_console(env, tmp_path)
    consoles.append(console)
    console.start()
    base = tmp_path / "agents-base"  # one machine: every agent spools into one base dir
    side_dir = tmp_path / "side"
    side_dir.mkdir()
    rng = random.Random(os.environ.get("RELIABILITY_SEED") or time.time_ns())
    procs = []
    started = time.monotonic()
    for k in range(agents):
        side = side_dir / f"agent{k}.log"
        proc = subprocess.Popen([sys.executable, "-c", AGENT, f"agent{k}", str(side)],
                                env=agent_env(base, console.url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append((proc, side, rng.uniform(0.2, max_life)))
    # Kill each one at a random moment after it has handed its first record.
    pending = list(procs)
    while pending:
        now = time.monotonic()
        for item in list(pending):
            proc, side, life = item
            if side.exists() and side.stat().st_size > 0:
                if not hasattr(proc, "first_seen"):
                    proc.first_seen = now
                if now - proc.first_seen >= life:
                    os.kill(proc.pid, signal.SIGKILL)
                    pending.remove(item)
            elif proc.poll() is not None:
                pytest.fail(f"agent exited before its first record: {proc.stderr.read().decode()[-2000:]}")
            elif now - started > 120:
                pytest.fail("an agent did not start within 120 s")
        time.sleep(0.01)
    for proc, _, _ in procs:
        assert proc.wait(30) == -signal.SIGKILL
    killed_at = time.monotonic()

    sync = telemetry_cli(base, console.url, "sync", "--timeout", "120")
    sync_seconds = time.monotonic() - killed_at
    assert sync.returncode == 0, sync.stdout + sync.stderr

    # What the agents were handed, by their own side logs.
    handed_events: set[tuple[str, int]] = set()
    started_runs: set[str] = set()
    ended_runs: set[str] = set()
    updated_runs: set[str] = set()
    for _, side, _ in procs:
        for line in side.read_text().splitlines():
            parts = line.split()
            if not parts or (parts[0] == "event" and len(parts) < 3):
                continue  # a side-log line cut by the kill: its call had returned, its record is checked anyway
            if parts[0] == "start":
                started_runs.add(parts[1])
            elif parts[0] == "event":
                handed_events.add((parts[1], int(parts[2])))
            elif parts[0] == "update":
                updated_runs.add(parts[1])
            elif parts[0] == "end":
                ended_runs.add(parts[1])

    db = env["TELEMETRY_DB_PATH"]
    assert integrity_check(db) == "ok"
    runs = sqlite_rows(db, "SELECT run_id, event_id, status, items_discovered, items_succeeded FROM agent_runs")
    per_run_id = Counter(r[0] for r in runs)
    assert not [k for k, n in per_run_id.items() if n > 1], "a run stored twice"
    by_run = {r[0]: r for r in runs}
    assert started_runs <= set(by_run), f"runs lost: {sorted(started_runs - set(by_run))[:5]}"
    events = sqlite_rows(db, "SELECT r.run_id, json_extract(e.payload_json, '$.i') FROM run_events e "
                             "JOIN agent_runs r ON r.event_id = e.event_id")
    stored_events = Counter((run_id, int(i)) for run_id, i in events)
    duplicates = [k for k, n in stored_events.items() if n > 1]
    assert not duplicates, f"events stored twice: {duplicates[:5]}"
    lost_events = handed_events - set(stored_events)
    assert not lost_events, f"{len(lost_events)} handed events lost, e.g. {sorted(lost_events)[:5]}"
    for run_id in updated_runs:
        assert by_run[run_id][3] == 20, run_id
    for run_id in ended_runs:
        assert by_run[run_id][2] == "success" and by_run[run_id][4] == 20, run_id

    # Every run of a killed agent: ended, or listed as stale.
    open_runs = {by_run[r][1] for r in started_runs - ended_runs if by_run[r][2] == "running"}
    assert open_runs <= stale_event_ids(console.url)
    assert len(open_runs) >= 1  # each agent was killed mid-run at least once in practice

    # A second sync replays nothing new.
    again = telemetry_cli(base, console.url, "sync", "--timeout", "60")
    assert again.returncode == 0 and "delivered 0 record" in again.stdout, again.stdout + again.stderr
    figures = {
        "agents": agents,
        "killed": agents,
        "runs_started": len(started_runs),
        "runs_ended": len(ended_runs),
        "runs_left_running_and_listed_stale": len(open_runs),
        "events_handed": len(handed_events),
        "events_stored": sum(stored_events.values()),
        "records_lost": len(lost_events),
        "duplicates": len(duplicates),
        "sync_seconds": round(sync_seconds, 2),
        "sync_output": sync.stdout.strip(),
    }
    record_figures(name, figures)
    return figures


def test_fifty_agents_killed_at_random_moments_lose_nothing_and_duplicate_nothing(
    tmp_path, sqlite_template, consoles
):
    run_killed_agents(tmp_path, sqlite_template, consoles, agents=50, max_life=3.0, name="agents_killed")


@pytest.mark.soak
def test_soak_two_hundred_agents_killed_after_longer_lives(tmp_path, sqlite_template, consoles):
    run_killed_agents(tmp_path, sqlite_template, consoles, agents=200, max_life=8.0, name="agents_killed_soak")
