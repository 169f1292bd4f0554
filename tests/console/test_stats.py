"""GET /api/v1/stats: counts, success rate, p50/p95 and time buckets, from the rollups."""

from __future__ import annotations

from tests.console.test_ingest import line


def ended(event_id: str, agent: str, status: str, duration_ms: int, start: str, **data) -> dict:
    return line(
        "run_ended",
        start,
        {"status": status, "duration_ms": duration_ms, **data},
        event_id=event_id,
        run_id=event_id,
        agent_name=agent,
        start_time=start,
    )


def seed(client) -> None:
    lines = [
        ended(f"a-{i}", "alpha", "success", 1000 * (i + 1), "2026-01-12T10:15:00Z", items_discovered=2)
        for i in range(10)
    ]
    lines += [ended("a-fail", "alpha", "failure", 50, "2026-01-13T08:00:00Z")]
    lines += [
        line(
            "run_started", "2026-01-13T09:00:00Z", event_id="b-1", agent_name="beta", start_time="2026-01-13T09:00:00Z"
        )
    ]
    assert client.post("/api/v1/ingest", json=lines).json["accepted"] == 12


def test_stats_per_agent_and_overall(client):
    seed(client)
    response = client.get("/api/v1/stats?since=2026-01-01")
    assert response.status_code == 200
    body = response.json
    assert body["since"] == "2026-01-01T00:00:00.000000+00:00" and body["bucket"] == "day"
    alpha = body["agents"]["alpha"]
    assert alpha["counts"] == {"failure": 1, "success": 10}
    assert alpha["success_rate"] == round(10 / 11, 4)
    assert alpha["items"]["discovered"] == 20
    # Log-scale buckets: within 9.1 % of the true nearest-rank value.
    assert abs(alpha["p50_ms"] - 5000) <= 0.091 * 5000
    assert abs(alpha["p95_ms"] - 10000) <= 0.091 * 10000
    assert alpha["buckets"] == [
        {"start": "2026-01-12T00:00:00.000000+00:00", "counts": {"success": 10}},
        {"start": "2026-01-13T00:00:00.000000+00:00", "counts": {"failure": 1}},
    ]
    assert body["agents"]["beta"]["counts"] == {"running": 1}
    assert body["agents"]["beta"]["success_rate"] is None and body["agents"]["beta"]["p50_ms"] is None
    assert body["overall"]["counts"] == {"failure": 1, "running": 1, "success": 10}


def test_stats_by_hour_for_one_agent_since_a_time(client):
    seed(client)
    body = client.get("/api/v1/stats?agent_name=alpha&since=2026-01-13T00:00:00&bucket=hour").json
    assert list(body["agents"]) == ["alpha"]
    assert body["agents"]["alpha"]["buckets"] == [
        {"start": "2026-01-13T08:00:00.000000+00:00", "counts": {"failure": 1}}
    ]
    assert body["overall"]["counts"] == {"failure": 1}


def test_stats_follow_updates_and_deletes(client, db):
    seed(client)
    client.post("/api/v1/runs/mark-failed", json={"event_ids": ["b-1"]})
    body = client.get("/api/v1/stats?since=2026-01-01").json
    assert body["agents"]["beta"]["counts"] == {"failure": 1}


def test_stats_errors(client):
    assert client.get("/api/v1/stats?since=garbage").status_code == 400
    assert client.get("/api/v1/stats?bucket=week").status_code == 422


def test_default_since_is_seven_days(client):
    body = client.get("/api/v1/stats").json
    assert body["agents"] == {} and body["overall"]["total"] == 0
    assert body["since"] < body["since"].replace(body["since"][:4], str(int(body["since"][:4]) + 1))


def test_a_since_within_a_day_reads_its_hours_then_whole_days(client):
    seed(client)
    body = client.get("/api/v1/stats?since=2026-01-12T10:30:00Z").json
    assert body["since"] == "2026-01-12T10:00:00.000000+00:00"
    assert body["agents"]["alpha"]["counts"] == {"failure": 1, "success": 10}
    assert [b["start"][:10] for b in body["agents"]["alpha"]["buckets"]] == ["2026-01-12", "2026-01-13"]
    later = client.get("/api/v1/stats?since=2026-01-12T11:00:00Z").json
    assert later["agents"]["alpha"]["counts"] == {"failure": 1}
    assert later["agents"]["alpha"]["p50_ms"] == later["agents"]["alpha"]["p95_ms"]
    assert abs(later["agents"]["alpha"]["p50_ms"] - 50) <= 0.091 * 50


def test_hourly_buckets_of_many_agents_add_up_per_hour(client):
    # Runs of three agents over five hours, statuses interleaved: each agent's buckets
    # follow its hours in order, and the overall bucket of an hour sums every agent's.
    lines, expected = [], {}
    for i in range(30):
        agent, hour = ("alpha", "beta", "gamma")[i % 3], 10 + (i * 7) % 5
        status = ("success", "failure", "partial", "success")[i % 4]
        start = f"2026-01-12T{hour:02d}:{i:02d}:00Z"
        lines.append(ended(f"h-{i}", agent, status, 100 + i, start))
        counts = expected.setdefault(agent, {}).setdefault(f"2026-01-12T{hour:02d}:00:00.000000+00:00", {})
        counts[status] = counts.get(status, 0) + 1
    assert client.post("/api/v1/ingest", json=lines).json["accepted"] == 30
    for event_id in ("h-0", "h-15"):  # alpha's two runs at 10:00 are deleted: that bucket goes
        assert client.delete(f"/api/v1/runs/{event_id}").status_code == 204
    del expected["alpha"]["2026-01-12T10:00:00.000000+00:00"]
    body = client.get("/api/v1/stats?since=2026-01-12T00:00:00Z&bucket=hour").json

    def as_buckets(by_hour: dict) -> list[dict]:
        return [{"start": h, "counts": dict(sorted(c.items()))} for h, c in sorted(by_hour.items()) if c]

    overall: dict = {}
    for agent, by_hour in expected.items():
        assert body["agents"][agent]["buckets"] == as_buckets(by_hour)
        for hour, counts in by_hour.items():
            for status, n in counts.items():
                overall.setdefault(hour, {})[status] = overall.get(hour, {}).get(status, 0) + n
    assert body["overall"]["buckets"] == as_buckets(overall)
    assert body["overall"]["total"] == 28
    assert body["agents"]["alpha"]["buckets"][0]["start"] == "2026-01-12T11:00:00.000000+00:00"
