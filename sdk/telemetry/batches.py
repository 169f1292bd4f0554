"""One delivery step: the next batch from the cursor, its post, and what the answer does to the lines.

Torn lines go to the dead letters; a batch the console cannot take (413, its
400/422, a 500) is halved until the line to blame is alone; a lone 400/422 is
dead-lettered at once, a lone 500 only after its attempts (`attempts.py`); any
other failure is an outage: the same lines wait for the backoff.
"""

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .attempts import LineAttempts, probe
from .deadletters import dead_letter
from .delivery import ACKED, BAD_BATCH, SERVER_ERROR, IngestConnection, Verdict, as_text, backoff_delay
from .spool import read_lines, save_cursor, sort_lines, spool_files

logger = logging.getLogger("telemetry")

# What deliver_once did.
IDLE = "idle"  # nothing pending
SENT = "sent"  # the cursor moved
WAIT = "wait"  # too few lines yet for a batch
FAILED = "failed"  # nothing moved: wait for the backoff
RETRY_NOW = "retry"  # a smaller batch is to be posted at once
PROBE_READ = 8  # lines read per file when looking for lines to probe with


class BatchDelivery:
    """The cursor of one base dir and the step that moves it: post a batch, judge the answer."""

    def __init__(
        self,
        raw_dir: Path,
        api_url: str,
        token: Optional[str],
        batch_size: int,
        batch_seconds: float,
        http_timeout: float,
        max_backoff: float,
        max_line_attempts: int,
    ):
        self.raw_dir = Path(raw_dir)
        self.api_url = api_url
        self.token = token
        self.batch_size = max(1, int(batch_size))
        self.batch_seconds = batch_seconds
        self.http_timeout = http_timeout
        self.max_backoff = max_backoff
        self.max_line_attempts = max(1, int(max_line_attempts))
        self.delivered = 0
        self.duplicates = 0
        self.rejected = 0
        self.batches = 0
        self.last_error: Optional[str] = None
        self.last_success_at: Optional[str] = None
        self._reset_delivery_state()

    def _reset_delivery_state(self) -> None:
        self._files: Dict[str, int] = {}
        self._attempts = LineAttempts()
        self._conn = IngestConnection(self.api_url, self.token, self.http_timeout)
        self._failures = 0
        self._backoff_until = 0.0
        self._limit = self.batch_size
        self._first_seen: Optional[float] = None

    def _next_batch(self) -> Optional[Tuple[str, int, List[Tuple[int, bytes]]]]:
        for name in spool_files(self.raw_dir):
            path = self.raw_dir / name
            offset = self._files.get(name, 0)
            try:
                if path.stat().st_size <= offset:
                    continue
            except OSError:
                continue
            lines, _ = read_lines(path, offset, self._limit)
            if lines:
                return name, offset, lines
        return None

    def deliver_once(self, urgent: bool = True, timeout: Optional[float] = None) -> Tuple[str, float]:
        """Post one batch (the caller holds the lock); return (outcome, seconds to wait)."""
        found = self._next_batch()
        if found is None:
            self._first_seen = None
            return IDLE, 0.0
        name, start, lines = found
        now = time.monotonic()
        if self._first_seen is None:
            self._first_seen = now
        waited = now - self._first_seen
        if not urgent and len(lines) < self._limit and waited < self.batch_seconds:
            return WAIT, self.batch_seconds - waited
        good, torn = sort_lines(start, lines)
        if good:
            verdict = self._conn.post([body for _, body in good], timeout)
            if verdict.kind == ACKED:
                self._accept([body for _, body in good], verdict)
            elif verdict.kind in (BAD_BATCH, SERVER_ERROR) and len(lines) > 1:
                self._limit = max(1, len(lines) // 2)  # find the line to blame by halving
                return RETRY_NOW, 0.0
            elif verdict.kind == BAD_BATCH:
                self._reject(good[0][1], f"HTTP {verdict.status}: {verdict.detail}", verdict.status)
            elif verdict.kind == SERVER_ERROR:
                if not self._failed_alone((name, good[0][0]), good[0][1], verdict, lines[-1][0], timeout):
                    return FAILED, 0.0
            else:
                return self._failed(verdict.detail, verdict.retry_after), 0.0
        for body in torn:
            self._reject(body, "torn line: not a complete JSON object (short write?)", None)
        self._files[name] = lines[-1][0]
        self._first_seen = (now - self.batch_seconds) if len(lines) >= self._limit else None
        self._limit = min(self.batch_size, self._limit * 2)
        self._save_state()
        return SENT, 0.0

    def _failed_alone(self, key, line: bytes, verdict: Verdict, end: int, timeout: Optional[float]) -> bool:
        """A line failed alone with a 500: count it only if the console accepts the lines after it.

        Return True when the line was dead-lettered (the cursor may pass it).
        """
        answer = f"HTTP {verdict.status}: {verdict.detail}"
        accepted, also_failed = probe(
            lambda body: self._conn.post(body, timeout), self._lines_after(key[0], end)
        )
        if accepted is None:
            self._failed(
                f"{answer} (and no later line was accepted: the console is failing, not the line)",
                verdict.retry_after,
            )
            return False
        self._count(accepted.answer)
        for other, other_verdict in also_failed:
            self._attempts.count(other, f"HTTP {other_verdict.status}: {other_verdict.detail}")
        attempts = self._attempts.count(key, answer)
        if attempts >= self.max_line_attempts:
            self._attempts.forget(key)
            self._reject(
                line,
                f"{answer} (failed alone on each of {attempts} attempt(s) while other lines were accepted)",
                verdict.status,
            )
            return True
        delay = backoff_delay(attempts, self.max_backoff)
        self._backoff_until = time.monotonic() + delay
        self.last_error = (
            f"a line failed alone ({attempts} of {self.max_line_attempts} attempts) "
            f"while other lines were accepted: {answer}"
        )
        logger.warning("telemetry: %s; retrying in %.1fs", self.last_error[:300], delay)
        self._save_state()
        return False

    def _lines_after(self, name: str, end: int):
        """Yield ((file, start offset), line) for the lines to post after the line ending at `end`."""
        names = spool_files(self.raw_dir)
        for later in names[names.index(name) :] if name in names else []:
            offset = end if later == name else self._files.get(later, 0)
            lines, _ = read_lines(self.raw_dir / later, offset, PROBE_READ)
            for start, body in sort_lines(offset, lines)[0]:
                yield (later, start), body

    def _accept(self, good: List[bytes], verdict: Verdict) -> None:
        answer = verdict.answer
        rejected = answer.get("rejected") or []
        for item in rejected:
            try:
                index = int(item.get("index"))
                line = good[index]
            except (AttributeError, TypeError, ValueError, IndexError):
                continue
            self._reject(line, as_text(item.get("detail")), verdict.status)
        self._count(answer)

    def _count(self, answer: Dict[str, Any]) -> None:
        self.delivered += answer["accepted"]
        self.duplicates += answer.get("duplicates", 0)
        self.batches += 1
        self._failures = 0
        self._backoff_until = 0.0
        self.last_success_at = datetime.now(timezone.utc).isoformat()

    def _reject(self, line: bytes, reason: str, status: Optional[int]) -> None:
        self.rejected += 1
        logger.warning("telemetry: console rejected a record (dead-lettered): %s", reason[:300])
        dead_letter(self.raw_dir, line, reason, status)

    def _failed(self, message: str, retry_after: float) -> str:
        self._failures += 1
        delay = max(backoff_delay(self._failures, self.max_backoff), retry_after)
        self._backoff_until = time.monotonic() + delay
        if message != self.last_error:
            logger.warning("telemetry: delivery failed (%s); retrying in %.1fs", message, delay)
        self.last_error = message
        self._save_state()
        return FAILED

    def _save_state(self) -> None:
        state = {
            "files": self._files,
            "line_attempts": self._attempts.state(self._files),
            "updated_at": datetime.now(timezone.utc).isoformat(),
            "last_success_at": self.last_success_at,
            "last_error": self.last_error,
        }
        try:
            save_cursor(self.raw_dir, state)
        except OSError as exc:
            self.last_error = f"cannot save cursor: {exc}"
