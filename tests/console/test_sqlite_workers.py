"""Four gunicorn workers writing one SQLite file: never a 500 "database is locked"."""

import sqlite3
import threading
import uuid

import requests

from tests.helpers import ConsoleProcess, free_port


def run_record(i: int, tag: str) -> dict:
    return {"event_id": f"{tag}-{i}-{uuid.uuid4()}", "run_id": f"r{i}", "agent_name": f"agent-{i % 3}",
            "job_type": "load", "start_time": "2026-11-01T10:00:00Z", "status": "success"}


def test_four_workers_write_concurrently_without_errors(tmp_path):
    db_file = tmp_path / "w.sqlite"
    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(db_file), "TELEMETRY_API_PORT": str(free_port()),
                              "TELEMETRY_API_WORKERS": "4", "TELEMETRY_API_THREADS": "4"}, tmp_path / "log")
    console.start()
    statuses: list[int] = []
    stored_ids: list[str] = []
    lock = threading.Lock()

    def single_posts(tag):
        with requests.Session() as http:
            for i in range(60):
                record = run_record(i, tag)
                status = http.post(console.url + "/api/v1/runs", json=record, timeout=30).status_code
                with lock:
                    statuses.append(status)
                    if status in (200, 201):
                        stored_ids.append(record["event_id"])

    def batches(tag):
        with requests.Session() as http:
            for b in range(10):
                records = [run_record(b * 100 + i, tag) for i in range(100)]
                status = http.post(console.url + "/api/v1/runs/batch", json=records, timeout=30).status_code
                with lock:
                    statuses.append(status)
                    if status == 201:
                        stored_ids.extend(r["event_id"] for r in records)

    try:
        threads = [threading.Thread(target=single_posts, args=(f"s{t}",)) for t in range(6)]
        threads += [threading.Thread(target=batches, args=(f"b{t}",)) for t in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        console.stop()

    assert statuses and all(s in (200, 201) for s in statuses), sorted(set(statuses))
    assert "database is locked" not in console.log()
    conn = sqlite3.connect(db_file)
    stored = {r[0] for r in conn.execute("SELECT event_id FROM agent_runs")}
    assert set(stored_ids) <= stored and len(stored) == 6 * 60 + 2 * 10 * 100
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
