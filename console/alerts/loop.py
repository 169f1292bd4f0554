"""The leader's alert loop: evaluate the rules every TELEMETRY_ALERT_EVALUATE_SECONDS, and at once
when the change marker moved; deliver what is due, each channel in its own thread.

Started by the scheduler when its process becomes the leader, stopped when it
steps down (console/jobs/scheduler.py). Reading the marker is one primary-key
read a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from console.alerts import deliver
from console.alerts.evaluate import evaluate
from console.core.settings import Settings
from console.core.timeutil import utcnow
from console.store import alert_marker
from console.store.db import Database

log = logging.getLogger("console.alerts.loop")

POLL_SECONDS = 1.0
CHANNEL_THREADS = 8


class AlertLoop:
    def __init__(self, db: Database, settings: Settings, runner: str,
                 clock: Callable[[], datetime] = utcnow, poll_seconds: float = POLL_SECONDS):
        self.db = db
        self.settings = settings
        self.runner = runner
        self.clock = clock
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(CHANNEL_THREADS, thread_name_prefix="alert-channel")
        self._busy: dict[int, Future] = {}
        self._seen_changes: int | None = None
        self._last_evaluation = 0.0

    def start(self) -> AlertLoop:
        self._thread = threading.Thread(target=self._run, name="telemetry-alerts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def tick(self) -> None:
        """One round: evaluate if due or woken, then hand due channels to their threads."""
        with self.db.read() as session:
            changes = alert_marker.read(session)
        elapsed = time.monotonic() - self._last_evaluation
        if changes != self._seen_changes or elapsed >= self.settings.alert_evaluate_seconds:
            self._seen_changes = changes
            self._last_evaluation = time.monotonic()
            counts = self.db.write(lambda s: evaluate(s, self.settings, self.clock(), self.runner))
            if counts["opened"] or counts["resolved"] or counts["repeats"]:
                log.info("alert rules evaluated: %s", counts)
        with self.db.read() as session:
            due = deliver.due_channels(session, self.clock())
        for channel_id in due:
            running = self._busy.get(channel_id)
            if running is not None and not running.done():
                continue  # this channel's thread is still at work (a slow receiver delays only itself)
            self._busy[channel_id] = self._pool.submit(self._deliver, channel_id)

    def _deliver(self, channel_id: int) -> None:
        try:
            deliver.deliver_channel(self.db, self.settings, channel_id, self.clock, self.runner)
        except Exception:
            log.exception("alert delivery on channel %s failed", channel_id)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("alert loop error")
            self._stop.wait(self.poll_seconds)
