"""The API as a state machine (hypothesis): sequences of writes and reads never give a 5xx,
and what a read returns agrees with a model of what was written.

The OpenAPI document carries no links, so schemathesis' own stateful mode has nothing to
follow; this machine plays the sequences by hand. A short run is part of `make test`; the
soak run is longer, plus schemathesis with 10x the suite's examples per operation.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from console.app import create_app
from console.core.settings import load_settings

SOAK = os.environ.get("TELEMETRY_SOAK") == "1"
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
statuses = st.sampled_from(["running", "success", "failure", "partial", "timeout", "cancelled", "failed",
                            "completed", "canceled", "succeeded", "bogus"])
CANON = {"failed": "failure", "completed": "success", "canceled": "cancelled", "succeeded": "success"}


def make_machine(client):
    class Api(RuleBasedStateMachine):
        runs = Bundle("runs")

        @initialize()
        def start(self):
            # Every example shares the database: its own agent names keep it apart from earlier ones.
            self.prefix = uuid.uuid4().hex[:8] + "-"
            self.model: dict[str, dict] = {}
            self.deleted: set[str] = set()

        def call(self, method, path, **kwargs):
            resp = client.open(path, method=method, **kwargs)
            assert resp.status_code < 500, (method, path, resp.status_code, resp.get_data(as_text=True)[:300])
            return resp

        @rule(target=runs, agent=text, status=statuses, minutes=st.integers(0, 10_000))
        def create(self, agent, status, minutes):
            event_id = str(uuid.uuid4())
            agent = self.prefix + agent
            body = {"event_id": event_id, "run_id": f"r-{event_id[:8]}", "agent_name": agent, "job_type": "j",
                    "start_time": (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat(), "status": status}
            resp = self.call("POST", "/api/v1/runs", json=body)
            if status == "bogus":
                assert resp.status_code == 422
                return event_id  # never stored
            assert resp.status_code == 201, resp.get_json()
            self.model[event_id] = {"status": CANON.get(status, status), "events": 0, "agent": agent}
            return event_id

        @rule(event_id=runs)
        def create_again(self, event_id):
            if event_id not in self.model:
                return
            resp = self.call("POST", "/api/v1/runs", json={"event_id": event_id, "run_id": "x", "agent_name": "x",
                                                           "job_type": "x", "start_time": "2026-01-01T00:00:00Z"})
            assert resp.status_code == 200 and resp.get_json()["status"] == "duplicate"

        @rule(event_id=runs, status=statuses)
        def patch(self, event_id, status):
            resp = self.call("PATCH", f"/api/v1/runs/{event_id}", json={"status": status})
            if event_id not in self.model:
                assert resp.status_code in (404, 422)
            elif status == "bogus":
                assert resp.status_code == 422
            else:
                assert resp.status_code == 200, resp.get_json()
                self.model[event_id]["status"] = CANON.get(status, status)

        @rule(event_id=runs, n=st.integers(1, 5), payload=text)
        def add_events(self, event_id, n, payload):
            items = [{"event_type": "e", "timestamp": datetime.now(UTC).isoformat(), "payload": {"p": payload},
                      "id": str(uuid.uuid4())} for _ in range(n)]
            resp = self.call("POST", f"/api/v1/runs/{event_id}/events", json=items)
            if event_id in self.model:
                assert resp.status_code == 201 and resp.get_json()["inserted"] == n
                self.model[event_id]["events"] += n
                # The same items again are duplicates.
                again = self.call("POST", f"/api/v1/runs/{event_id}/events", json=items).get_json()
                assert again["inserted"] == 0 and again["duplicates"] == n
            else:
                assert resp.status_code == 404

        @rule(event_id=runs)
        def heartbeat(self, event_id):
            resp = self.call("POST", f"/api/v1/runs/{event_id}/heartbeat", json={})
            assert resp.status_code == (200 if event_id in self.model else 404)

        @rule(event_id=runs, sha=st.text(alphabet="0123456789abcdef", min_size=5, max_size=42))
        def commit(self, event_id, sha):
            resp = self.call("POST", f"/api/v1/runs/{event_id}/associate-commit",
                             json={"commit_hash": sha, "commit_source": "ci"})
            if event_id not in self.model:
                assert resp.status_code in (404, 422)
            else:
                assert resp.status_code == (200 if 7 <= len(sha) <= 40 else 422)

        @rule(event_id=runs)
        def delete(self, event_id):
            resp = self.call("DELETE", f"/api/v1/runs/{event_id}")
            if event_id in self.model:
                assert resp.status_code == 204
                del self.model[event_id]
                self.deleted.add(event_id)
            else:
                assert resp.status_code == 404

        @rule()
        def mark_stale_failed(self):
            resp = self.call("POST", "/api/v1/runs/mark-failed", json={"older_than_minutes": 5000, "reason": "sm"})
            assert resp.status_code == 200
            for event_id in resp.get_json()["event_ids"]:
                if event_id in self.model:  # (runs of earlier examples may be marked too)
                    assert self.model[event_id]["status"] == "running"
                    self.model[event_id]["status"] = "failure"

        @rule(limit=st.integers(-5, 2000), agent=text)
        def list_runs(self, limit, agent):
            agent = self.prefix + agent
            resp = self.call("GET", "/api/v1/runs", query_string={"limit": limit, "agent_name": agent})
            if not 1 <= limit <= 1000:
                assert resp.status_code == 422
            else:
                expected = {e for e, m in self.model.items() if m["agent"] == agent}
                got = {r["event_id"] for r in resp.get_json()}
                assert got == expected or (len(expected) > limit and got <= expected)

        @invariant()
        def reads_agree_with_the_model(self):
            for event_id, m in list(self.model.items())[-3:]:
                run = self.call("GET", f"/api/v1/runs/{event_id}").get_json()
                assert run["status"] == m["status"], (event_id, run["status"], m)
                events = self.call("GET", f"/api/v1/runs/{event_id}/events?limit=1000").get_json()
                assert len(events) == m["events"]
            for event_id in list(self.deleted)[-3:]:
                assert self.call("GET", f"/api/v1/runs/{event_id}").status_code == 404

    return Api


@pytest.fixture(params=["sqlite"])
def backend(request) -> str:
    return request.param


def run_machine(env, steps: int, examples: int):
    app = create_app(load_settings(env), {"TESTING": True})
    try:
        machine = make_machine(app.test_client())
        machine.TestCase.settings = settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                                             suppress_health_check=list(HealthCheck))
        machine.TestCase().runTest()
    finally:
        app.extensions["telemetry_db"].dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_sequences_of_api_calls_never_fail_and_reads_match_writes(env):
    run_machine(env, steps=25, examples=15)


@pytest.mark.soak
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_soak_long_sequences_of_api_calls(env):
    run_machine(env, steps=60, examples=200)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_schemathesis_every_operation_with_ten_times_the_examples(sqlite_template, tmp_path):
    import schemathesis

    from tests.console.test_schemathesis import SEED, exercise

    path = tmp_path / "telemetry.sqlite"
    shutil.copy(sqlite_template, path)
    app = create_app(load_settings({"TELEMETRY_DB_PATH": str(path), "TELEMETRY_SECRET_KEY": "soak",
                                    "TELEMETRY_BASE_DIR": str(tmp_path)}), {"TESTING": True})
    try:
        failures = exercise(schemathesis.openapi.from_wsgi("/openapi.json", app), 300)
    finally:
        app.extensions["telemetry_db"].dispose()
    assert not failures, f"seed {SEED}\n" + "\n\n".join(failures)
