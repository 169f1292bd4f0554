"""writelock.queued_write(shared=True): batches waiting for the write lock together share one transaction."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from console.core.locks import file_lock
from console.store.writelock import queued_write

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # the file lock is SQLite's


def _count(outcome: str, n: int):
    def work(session):
        session.execute(
            text(
                "INSERT INTO ingest_counts (outcome, records) VALUES (:o, :n) "
                "ON CONFLICT (outcome) DO UPDATE SET records = ingest_counts.records + excluded.records"
            ),
            {"o": outcome, "n": n},
        )
        return n

    return work


def _run_together(db, works: list, settings) -> list:
    """Start every write while another process-like holder keeps the file lock, then let go."""
    results: list = [None] * len(works)
    errors: list = [None] * len(works)

    def call(i):
        try:
            results[i] = queued_write(db, works[i], shared=True)
        except Exception as exc:  # noqa: BLE001 - checked below
            errors[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    with file_lock(settings.lock_path("write")):  # held as another worker would
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # every thread is queued behind the file lock
    for thread in threads:
        thread.join(10)
    return list(zip(results, errors, strict=True))


def test_writes_that_wait_together_commit_together(db, settings, backend, monkeypatch):
    transactions = []
    real_write = db.write
    monkeypatch.setattr(db, "write", lambda work, **kw: transactions.append(1) or real_write(work, **kw))
    outcomes = _run_together(db, [_count("accepted", n) for n in (1, 2, 3, 4)], settings)
    assert [result for result, _ in outcomes] == [1, 2, 3, 4]
    assert len(transactions) <= 2  # the first thread in may go alone; the rest share one
    with db.read() as session:
        assert session.execute(text("SELECT records FROM ingest_counts")).scalar_one() == 10


def test_a_failing_batch_fails_alone(db, settings, backend):
    def broken(session):
        raise ValueError("bad batch")

    outcomes = _run_together(db, [_count("accepted", 5), broken, _count("accepted", 7)], settings)
    assert [r for r, _ in outcomes] == [5, None, 7]
    assert isinstance(outcomes[1][1], ValueError)
    with db.read() as session:
        assert session.execute(text("SELECT records FROM ingest_counts")).scalar_one() == 12
