"""Idempotency under a real race: same event_id POSTed twice at once, 2 workers x 8 threads."""

from __future__ import annotations

import http.client
import json
import threading
import uuid

import sqlalchemy as sa

from tests.helpers import ConsoleProcess, free_port

PAIRS = 200
CLIENT_PAIRS = 8  # 16 client threads, two per barrier


def test_concurrent_posts_of_one_event_id_make_one_row_one_created_one_duplicate(env, settings, tmp_path):
    server = ConsoleProcess(
        {**env, "TELEMETRY_API_PORT": str(free_port()), "TELEMETRY_API_WORKERS": "2", "TELEMETRY_API_THREADS": "8"},
        tmp_path / "serve.log",
    )
    server.start()
    try:
        event_ids = [str(uuid.uuid4()) for _ in range(PAIRS)]
        barriers = [threading.Barrier(2) for _ in range(PAIRS)]
        outcomes: list[tuple[int, str, str]] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def client(lane: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                for i in range(lane // 2, PAIRS, CLIENT_PAIRS):
                    body = json.dumps({"event_id": event_ids[i], "run_id": f"r{i}-{lane % 2}", "agent_name": "race",
                                       "job_type": "j", "start_time": "2026-01-12T10:30:00Z"})
                    barriers[i].wait(timeout=30)
                    conn.request("POST", "/api/v1/runs", body, {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    answer = json.loads(response.read())
                    with lock:
                        outcomes.append((response.status, answer.get("status"), event_ids[i]))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                for barrier in barriers:
                    barrier.abort()
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(lane,)) for lane in range(CLIENT_PAIRS * 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        assert len(outcomes) == 2 * PAIRS
        created = [o for o in outcomes if o[:2] == (201, "created")]
        duplicate = [o for o in outcomes if o[:2] == (200, "duplicate")]
        assert len(created) == PAIRS and len(duplicate) == PAIRS, sorted({o[:2] for o in outcomes})
        assert {o[2] for o in created} == set(event_ids) == {o[2] for o in duplicate}
    finally:
        server.stop()
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event_id, count(*) FROM agent_runs GROUP BY event_id")).all()
    engine.dispose()
    assert len(rows) == PAIRS and all(n == 1 for _, n in rows)
