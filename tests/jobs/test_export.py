"""Export against a local HTTP server that answers scripted codes."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from console.core.timeutil import utcnow
from console.jobs import export, history
from console.jobs.tables import export_state
from console.store.models import agent_runs
from tests.jobs.conftest import insert_runs, run_row


class ScriptedServer:
    """Answers each run (by its run_id) with the next code of its script; "timeout" sleeps past the client."""

    def __init__(self):
        self.scripts: dict[str, list] = {}
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                doc = json.loads(body)
                run = doc.get("run", doc)
                server.requests.append({"run_id": run["run_id"], "headers": dict(self.headers), "body": body})
                script = server.scripts.get(run["run_id"], [200])
                code = script.pop(0) if len(script) > 1 else script[0]
                if code == "timeout":
                    time.sleep(0.6)
                    code = 200
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(f"answer {code}".encode())
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def tries(self, run_id: str) -> int:
        return sum(1 for r in self.requests if r["run_id"] == run_id)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hook():
    server = ScriptedServer()
    yield server
    server.close()


class FakeSleep:
    def __init__(self):
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def states(db, event_id):
    with db.read() as session:
        rows = session.execute(sa.select(export_state).where(export_state.c.event_id == event_id)).mappings().all()
        run = session.execute(sa.select(agent_runs).where(agent_runs.c.event_id == event_id)).mappings().one()
    return [dict(r) for r in rows], dict(run)


def test_scripted_answers_give_the_right_tries_and_final_states(db, make_settings, hook):
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=hook.url, TELEMETRY_EXPORT_TIMEOUT_MS=250,
                             TELEMETRY_EXPORT_MAX_ATTEMPTS=2)
    sleep = FakeSleep()
    start = utcnow()
    # The destination appears first; the runs end after that.
    export.export_pending(db, settings, sleep=sleep, now=start)
    later = start + timedelta(seconds=5)
    runs = {name: run_row(run_id=name, created_at=later) for name in ("ok", "flaky", "bad", "slow")}
    insert_runs(db, list(runs.values()))
    hook.scripts.update({"ok": [200], "flaky": [500, 200], "bad": [400], "slow": ["timeout"]})

    counts = export.export_pending(db, settings, sleep=sleep, now=later)

    assert counts["posted"] == 2 and counts["rejected"] == 1 and counts["retrying"] == 1
    assert (hook.tries("ok"), hook.tries("flaky"), hook.tries("bad"), hook.tries("slow")) == (1, 2, 1, 4)
    assert sorted(sleep.delays) == sorted([1, 1, 2, 4])  # flaky: 1 s; slow: 1, 2, 4 s

    (ok,), ok_run = states(db, runs["ok"]["event_id"])
    assert (ok["state"], ok["tries"], ok["attempts"], ok["last_status"]) == ("posted", 1, 1, 200)
    assert ok_run["api_posted"] == 1 and ok_run["api_posted_at"] and ok_run["api_retry_count"] == 0
    assert ok_run["status"] == "success"
    (flaky,), flaky_run = states(db, runs["flaky"]["event_id"])
    assert (flaky["state"], flaky["tries"]) == ("posted", 2)
    assert flaky_run["api_posted"] == 1 and flaky_run["api_retry_count"] == 1
    (bad,), bad_run = states(db, runs["bad"]["event_id"])
    assert (bad["state"], bad["tries"], bad["last_status"]) == ("rejected", 1, 400)
    assert "answer 400" in bad["last_error"]
    assert bad_run["api_posted"] == 0 and bad_run["status"] == "success"
    (slow,), slow_run = states(db, runs["slow"]["event_id"])
    assert (slow["state"], slow["tries"], slow["attempts"]) == ("pending", 4, 1)
    assert "Timeout" in slow["last_error"] and slow_run["api_retry_count"] == 4

    # The next pass tries only what is pending; the second failed attempt gives up.
    counts = export.export_pending(db, settings, sleep=sleep, now=later + timedelta(minutes=1))
    assert counts["gave_up"] == 1 and counts["posted"] == 0
    assert hook.tries("slow") == 8 and hook.tries("ok") == 1 and hook.tries("bad") == 1
    (slow,), slow_run = states(db, runs["slow"]["event_id"])
    assert (slow["state"], slow["tries"], slow["attempts"]) == ("gave_up", 8, 2)
    assert slow_run["api_posted"] == 0 and slow_run["api_retry_count"] == 8

    # Nothing left: a third pass posts nothing.
    assert export.export_pending(db, settings, sleep=sleep, now=later + timedelta(minutes=2))["tries"] == 0


def test_429_and_408_are_retried_and_other_4xx_are_not(db, make_settings, hook):
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=hook.url)
    t0 = utcnow()
    export.export_pending(db, settings, sleep=FakeSleep(), now=t0)
    rows = [run_row(run_id=n, created_at=t0 + timedelta(seconds=1)) for n in ("r429", "r408", "r404")]
    insert_runs(db, rows)
    hook.scripts.update({"r429": [429, 429, 200], "r408": [408, 200], "r404": [404]})
    export.export_pending(db, settings, sleep=FakeSleep(), now=t0 + timedelta(seconds=2))
    assert (hook.tries("r429"), hook.tries("r408"), hook.tries("r404")) == (3, 2, 1)
    assert [states(db, r["event_id"])[0][0]["state"] for r in rows] == ["posted", "posted", "rejected"]


def test_only_runs_ended_after_the_destination_appeared_unless_backfill(db, make_settings, hook):
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=hook.url)
    t0 = utcnow()
    old = run_row(run_id="old", created_at=t0 - timedelta(days=2))
    running = run_row(run_id="running", status="running", created_at=t0 + timedelta(seconds=1))
    insert_runs(db, [old, running])
    export.export_pending(db, settings, sleep=FakeSleep(), now=t0)
    assert hook.requests == []
    counts = export.export_pending(db, settings, sleep=FakeSleep(), now=t0, backfill=True)
    assert counts["posted"] == 1 and [r["run_id"] for r in hook.requests] == ["old"]


def test_webhook_carries_bearer_and_a_verifiable_signature(db, make_settings, hook):
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=hook.url, TELEMETRY_EXPORT_WEBHOOK_TOKEN="tok",
                             TELEMETRY_EXPORT_WEBHOOK_SECRET="s3cret")
    t0 = utcnow()
    export.export_pending(db, settings, now=t0)
    row = run_row(run_id="signed", created_at=t0 + timedelta(seconds=1))
    insert_runs(db, [row])
    export.export_pending(db, settings, now=t0 + timedelta(seconds=3))
    (request,) = hook.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer tok"
    expected = hmac.new(b"s3cret", headers["x-telemetry-timestamp"].encode() + b"." + request["body"],
                        hashlib.sha256).hexdigest()
    assert headers["x-telemetry-signature"] == f"sha256={expected}"
    assert headers["idempotency-key"].startswith(row["event_id"] + ":webhook:")
    body = json.loads(request["body"])
    assert body["type"] == "run.ended" and body["run"]["event_id"] == row["event_id"]


def test_sheets_and_a_webhook_both_must_post_before_api_posted(db, make_settings, hook):
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=hook.url, GOOGLE_SHEETS_API_ENABLED="true",
                             GOOGLE_SHEETS_API_URL=hook.url + "?sheet=1", GOOGLE_SHEETS_API_TOKEN="sheet-token",
                             TELEMETRY_EXPORT_MAX_ATTEMPTS=1)
    t0 = utcnow()
    export.export_pending(db, settings, now=t0)
    row = run_row(run_id="both", created_at=t0 + timedelta(seconds=1))
    insert_runs(db, [row])
    hook.scripts["both"] = [200, 400]  # the webhook posts first, then Sheets rejects
    export.export_pending(db, settings, now=t0 + timedelta(seconds=2))
    rows, run = states(db, row["event_id"])
    assert sorted((r["destination"].split(":")[0], r["state"]) for r in rows) == [
        ("sheets", "rejected"), ("webhook", "posted")]
    assert run["api_posted"] == 0
    sheets_body = json.loads(hook.requests[1]["body"])
    assert sheets_body["token"] == "sheet-token" and sheets_body["run_id"] == "both"

    with db.read() as session:
        shown = export.export_states(session, row["event_id"])
    assert {s["label"] for s in shown} == {hook.url.removesuffix("/hook")}  # the path may be a secret
    assert db.write(lambda s: export.retry_export(s, row["event_id"], "sheets")) == 1
    with db.read() as session:  # the leader is asked for a pass now, not at the next period
        assert history.has_run_requests(session)
    hook.scripts["both"] = [200]
    export.export_pending(db, settings, now=t0 + timedelta(seconds=3))
    rows, run = states(db, row["event_id"])
    assert {r["state"] for r in rows} == {"posted"} and run["api_posted"] == 1


def test_a_claimed_attempt_is_not_posted_twice(db, make_settings, hook):
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=hook.url)
    t0 = utcnow()
    export.export_pending(db, settings, now=t0)
    row = run_row(run_id="once", created_at=t0 + timedelta(seconds=1))
    insert_runs(db, [row])
    (dest,) = export.destinations(settings)
    hold = timedelta(minutes=1)
    assert db.write(lambda s: export.claim_attempt(s, row["event_id"], dest.key, t0, hold))
    assert not db.write(lambda s: export.claim_attempt(s, row["event_id"], dest.key, t0, hold))
    # While another process holds the claim, a pass skips the run.
    export.export_pending(db, settings, now=t0 + timedelta(seconds=2))
    assert hook.requests == []


def test_the_scan_watermark_passes_settled_runs_only(db, make_settings, hook):
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=hook.url)
    t0 = utcnow()
    before = run_row(run_id="before", created_at=t0 - timedelta(hours=1))
    open_run = run_row(run_id="open", status="running", created_at=t0 - timedelta(hours=1))
    insert_runs(db, [before, open_run])
    export.export_pending(db, settings, now=t0)
    (dest,) = export.destinations(settings)

    def watermark():
        with db.read() as session:
            return session.execute(sa.select(export.export_destinations.c.scan_from_id)).scalar_one()

    def run_id_of(row):
        with db.read() as session:
            return session.execute(sa.select(agent_runs.c.id).where(
                agent_runs.c.event_id == row["event_id"])).scalar_one()

    assert watermark() == run_id_of(open_run)  # the run still open may end after the destination appeared
    # It ends later; later runs arrive; one is rejected.
    db.write(lambda s: s.execute(agent_runs.update().where(agent_runs.c.event_id == open_run["event_id"]).values(
        status="success", end_time=t0 + timedelta(seconds=5), updated_at=t0 + timedelta(seconds=5))))
    rows = [run_row(run_id=n, created_at=t0 + timedelta(seconds=6)) for n in ("a", "b")]
    insert_runs(db, rows)
    hook.scripts["b"] = [400]
    export.export_pending(db, settings, now=t0 + timedelta(seconds=10))
    assert sorted(r["run_id"] for r in hook.requests) == ["a", "b", "open"]
    assert watermark() == run_id_of(open_run)  # everything is too recent to be settled
    export.export_pending(db, settings, now=utcnow() + timedelta(minutes=11))
    assert watermark() == run_id_of(rows[1]) + 1  # all settled: the next scan starts after the last run
    assert len(hook.requests) == 3

    # "Retry now" on the rejected run brings the scan back to it.
    hook.scripts["b"] = [200]
    assert db.write(lambda s: export.retry_export(s, rows[1]["event_id"], dest.key)) == 1
    assert watermark() == run_id_of(rows[1])
    export.export_pending(db, settings, now=utcnow() + timedelta(minutes=12))
    assert states(db, rows[1]["event_id"])[0][0]["state"] == "posted"


def test_a_destination_that_is_down_does_not_hold_the_pass_or_burn_every_attempt(db, make_settings, hook):
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=hook.url)
    t0 = utcnow()
    export.export_pending(db, settings, now=t0)
    rows = [run_row(run_id=f"d{i}", created_at=t0 + timedelta(seconds=1)) for i in range(10)]
    insert_runs(db, rows)
    for row in rows:
        hook.scripts[row["run_id"]] = [503]
    sleep = FakeSleep()
    counts = export.export_pending(db, settings, sleep=sleep, now=t0 + timedelta(seconds=2))
    assert (counts["retrying"], counts["deferred"], counts["tries"]) == (3, 7, 12)
    assert len(hook.requests) == 12
    untouched = [states(db, r["event_id"])[0] for r in rows[3:]]
    assert all(s == [] or s[0]["attempts"] == 0 for s in untouched)
