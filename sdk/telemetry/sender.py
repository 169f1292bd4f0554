"""The background sender: spool → POST /api/v1/ingest, one lock holder per base dir."""

import atexit
import logging
import os
import threading
import time
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .attempts import LineAttempts, held_lines, probe
from .deadletters import dead_letter
from .delivery import ACKED, BAD_BATCH, SERVER_ERROR, IngestConnection, Verdict, as_text, backoff_delay
from .spool import (
    LOCK_NAME,
    NOFOLLOW,
    apply_retention,
    count_lines,
    load_cursor,
    make_private_dir,
    read_lines,
    save_cursor,
    sort_lines,
    spool_files,
)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

logger = logging.getLogger("telemetry")

IDLE = "idle"
SENT = "sent"
WAIT = "wait"
FAILED = "failed"
RETRY_NOW = "retry"
_RETENTION_CHECK_SECONDS = 600.0
PROBE_READ = 8  # lines read per file when looking for lines to probe with


def _lock_file(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


class Sender:
    """Deliver the spool of one base dir to the console's ingest endpoint."""

    def __init__(
        self,
        raw_dir: Path,
        api_url: str,
        token: Optional[str] = None,
        batch_size: int = 500,
        batch_seconds: float = 1.0,
        http_timeout: float = 10.0,
        max_backoff: float = 60.0,
        flush_timeout: float = 2.0,
        retention_days: float = 7.0,
        max_line_attempts: int = 5,
    ):
        self.raw_dir = Path(raw_dir)
        self.api_url = api_url
        self.token = token
        self.batch_size = max(1, int(batch_size))
        self.batch_seconds = batch_seconds
        self.http_timeout = http_timeout
        self.max_backoff = max_backoff
        self.flush_timeout = flush_timeout
        self.retention_days = retention_days
        self.max_line_attempts = max(1, int(max_line_attempts))
        self.delivered = 0
        self.duplicates = 0
        self.rejected = 0
        self.batches = 0
        self.last_error: Optional[str] = None
        self.last_success_at: Optional[str] = None
        self._reset_process_state()
        atexit.register(_exit_hook, weakref.ref(self))

    def _reset_process_state(self) -> None:
        self._thread: Optional[threading.Thread] = None
        self._deliver_lock = threading.Lock()
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._urgent_users = 0
        self._urgent_guard = threading.Lock()
        self._lock_fd: Optional[int] = None
        self._lock_retry_at = 0.0
        self._files: Dict[str, int] = {}
        self._attempts = LineAttempts()
        self._conn = IngestConnection(self.api_url, self.token, self.http_timeout)
        self._failures = 0
        self._backoff_until = 0.0
        self._limit = self.batch_size
        self._first_seen: Optional[float] = None
        self._retention_at = 0.0
        self._exiting = False

    def after_fork_in_child(self) -> None:
        """Forget the parent's thread, lock and connection; the child starts its own sender."""
        fd = self._lock_fd
        self._reset_process_state()
        if fd is not None:
            try:
                os.close(fd)  # our copy only; the parent keeps its lock
            except OSError:
                pass

    # ---- the agent-facing side -------------------------------------------------------

    def notify(self) -> None:
        """Tell the sender a line was spooled (starts the thread on first use)."""
        if self._thread is None:
            self.start()
        if not self._wake.is_set():
            self._wake.set()

    def start(self) -> None:
        """Start the daemon thread if it is not running in this process."""
        with self._urgent_guard:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="telemetry-sender", daemon=True)
            self._thread.start()

    def in_backoff(self) -> bool:
        """Return whether the last delivery failed and the sender is waiting to retry."""
        return time.monotonic() < self._backoff_until

    def holds_lock(self) -> bool:
        """Return whether this process is the base dir's delivering sender."""
        return self._lock_fd is not None

    def pending(self) -> int:
        """Return how many spooled lines of this base dir are not yet acknowledged."""
        offsets = dict(self._files) if self._lock_fd is not None else load_cursor(self.raw_dir)["files"]
        total = 0
        for name in spool_files(self.raw_dir):
            path = self.raw_dir / name
            start = int(offsets.get(name, 0))
            try:
                if path.stat().st_size <= start:
                    continue
            except OSError:
                continue
            total += count_lines(path, start)
        return total

    def held_lines(self) -> List[Dict[str, Any]]:
        """The lines being retried after failing alone with a 500: file, offset, attempts, answer."""
        if self._lock_fd is not None:
            return self._attempts.entries()
        return held_lines(load_cursor(self.raw_dir))

    def flush(self, timeout: float = 5.0) -> int:
        """Deliver now; wait at most `timeout` seconds; return how many lines remain pending."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._urgent_guard:
            self._urgent_users += 1
            self._urgent.set()
        try:
            self.notify()
            while True:
                left = self.pending()
                if left == 0 or time.monotonic() >= deadline:
                    return left
                self._wake.set()
                time.sleep(0.02)
        finally:
            with self._urgent_guard:
                self._urgent_users -= 1
                if self._urgent_users == 0:
                    self._urgent.clear()

    # ---- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._exiting:
            try:
                if not self._hold_lock():
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                wait = self._backoff_until - time.monotonic()
                if wait > 0:
                    time.sleep(min(wait, 0.25))
                    continue
                self._wake.clear()
                with self._deliver_lock:
                    if self._exiting:
                        break
                    outcome, seconds = self.deliver_once(self._urgent.is_set())
                if outcome == IDLE:
                    self._maybe_apply_retention()
                    self._wake.wait(1.0)
                elif outcome == WAIT:
                    self._urgent.wait(seconds)
            except Exception as exc:  # the sender must never die
                self.last_error = f"sender error: {exc!r}"
                logger.exception("telemetry: sender loop error")
                time.sleep(1.0)

    def _hold_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        now = time.monotonic()
        if now < self._lock_retry_at:
            return False
        fd = None
        try:
            make_private_dir(self.raw_dir)
            fd = os.open(str(self.raw_dir / LOCK_NAME), os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o600)
            _lock_file(fd)
        except OSError:
            if fd is not None:
                os.close(fd)
            self._lock_retry_at = now + 1.0
            return False
        self._lock_fd = fd
        state = load_cursor(self.raw_dir)
        self._files = {k: int(v) for k, v in state["files"].items()}
        self._attempts = LineAttempts(state.get("line_attempts"))
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop this process's sender thread and give up the base dir's lock."""
        self._exiting = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.release_lock()

    def release_lock(self) -> None:
        """Give up delivering for this base dir (another process may take over)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    # ---- one batch -----------------------------------------------------------------

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

    def _maybe_apply_retention(self) -> None:
        now = time.monotonic()
        if now < self._retention_at:
            return
        self._retention_at = now + _RETENTION_CHECK_SECONDS
        removed = apply_retention(self.raw_dir, self._files, self.retention_days)
        if removed:
            self._save_state()

    # ---- deliver-now for the CLI and interpreter exit --------------------------------

    def deliver_until(self, deadline: float, stop_on_failure: bool) -> int:
        """Deliver in this thread until nothing is pending or the deadline; return pending."""
        while time.monotonic() < deadline:
            if not self._hold_lock():
                if stop_on_failure or self.pending() == 0:
                    break  # another process delivers this base dir
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                continue
            wait = self._backoff_until - time.monotonic()
            if wait > 0:
                if stop_on_failure or time.monotonic() + wait >= deadline:
                    break
                time.sleep(wait)
            if not self._deliver_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break  # the thread is stuck on a slow request: do not wait for it
            try:
                outcome, _ = self.deliver_once(True, deadline - time.monotonic())
            finally:
                self._deliver_lock.release()
            if outcome == IDLE:
                break
            if outcome == FAILED and stop_on_failure:
                break
        return self.pending()

    def at_exit(self) -> None:
        """Keep delivering for at most flush_timeout seconds, only while deliveries succeed."""
        self._exiting = True
        if self.flush_timeout <= 0 or self.in_backoff() or self._failures:
            return
        deadline = time.monotonic() + self.flush_timeout
        try:
            self.deliver_until(deadline, stop_on_failure=True)
        except Exception:
            logger.debug("telemetry: exit flush failed", exc_info=True)


def _exit_hook(ref) -> None:
    sender = ref()
    if sender is not None:
        sender.at_exit()
