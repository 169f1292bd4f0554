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

from . import __version__
from .delivery import (
    as_text,
    backoff_delay,
    console_error,
    is_ingest_answer,
    json_object,
    parse_retry_after,
    response_detail,
)
from .spool import (
    LOCK_NAME,
    apply_retention,
    count_lines,
    dead_letter,
    load_cursor,
    read_lines,
    save_cursor,
    split_glued,
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
_RETRYABLE_STATUSES = {408, 429}
_RETENTION_CHECK_SECONDS = 600.0


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
    ):
        self.raw_dir = Path(raw_dir)
        self.url = api_url.rstrip("/") + "/api/v1/ingest"
        self.token = token
        self.batch_size = max(1, int(batch_size))
        self.batch_seconds = batch_seconds
        self.http_timeout = http_timeout
        self.max_backoff = max_backoff
        self.flush_timeout = flush_timeout
        self.retention_days = retention_days
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
        self._session = None
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
            self.raw_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(str(self.raw_dir / LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
            _lock_file(fd)
        except OSError:
            if fd is not None:
                os.close(fd)
            self._lock_retry_at = now + 1.0
            return False
        self._lock_fd = fd
        self._files = {k: int(v) for k, v in load_cursor(self.raw_dir)["files"].items()}
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

    def _next_batch(self) -> Optional[Tuple[str, List[Tuple[int, bytes]]]]:
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
                return name, lines
        return None

    def deliver_once(self, urgent: bool = True, timeout: Optional[float] = None) -> Tuple[str, float]:
        """Post one batch (the caller holds the lock); return (outcome, seconds to wait)."""
        found = self._next_batch()
        if found is None:
            self._first_seen = None
            return IDLE, 0.0
        name, lines = found
        now = time.monotonic()
        if self._first_seen is None:
            self._first_seen = now
        waited = now - self._first_seen
        if not urgent and len(lines) < self._limit and waited < self.batch_seconds:
            return WAIT, self.batch_seconds - waited
        good = []
        torn = []
        for _, line in lines:
            body = line.rstrip(b"\r")
            if not body.strip():
                continue
            fragment, body = split_glued(body)
            if fragment:
                torn.append(fragment)
            if body[:1] == b"{" and body[-1:] == b"}":
                good.append(body)
            else:
                torn.append(body)
        if good:
            outcome = self._post(good, timeout)
            if outcome != SENT:
                return outcome, 0.0
        for body in torn:
            self._reject(body, "torn line: not a complete JSON object (short write?)", None)
        self._files[name] = lines[-1][0]
        self._first_seen = (now - self.batch_seconds) if len(lines) >= self._limit else None
        self._limit = min(self.batch_size, self._limit * 2)
        self._save_state()
        return SENT, 0.0

    def _post(self, good: List[bytes], timeout: Optional[float]) -> str:
        t = self.http_timeout if timeout is None else max(0.05, min(timeout, self.http_timeout))
        try:
            resp = self._get_session().post(
                self.url,
                data=b"[" + b",".join(good) + b"]",
                headers=self._headers(),
                timeout=(min(3.0, t), t),
            )
        except Exception as exc:
            return self._failed(f"console unreachable: {type(exc).__name__}: {exc}", 0.0)
        status = resp.status_code
        answer = json_object(resp)  # parsed once, for whichever branch reads it
        if 200 <= status < 300:
            if not is_ingest_answer(answer):
                body = (resp.text or "")[:200]
                message = f"HTTP {status} but not the console's ingest answer (is the URL right?): {body}"
                return self._failed(message, 0.0)  # the lines stay spooled, unacknowledged
            self._accept(good, answer, status)
            return SENT
        detail = response_detail(answer, resp)
        # 413 from anything (a proxy's body limit too) is answered by smaller batches.
        if status == 413 or (status in (400, 422) and console_error(answer)):
            if len(good) > 1:  # find the culprit by halving the batch
                self._limit = max(1, len(good) // 2)
                return RETRY_NOW
            self._reject(good[0], f"HTTP {status}: {detail}", status)
            return SENT
        return self._failed(
            f"HTTP {status} from ingest: {detail}", parse_retry_after(resp.headers.get("Retry-After"))
        )

    def _accept(self, good: List[bytes], answer: Dict[str, Any], status: int) -> None:
        rejected = answer.get("rejected") or []
        for item in rejected:
            try:
                index = int(item.get("index"))
                line = good[index]
            except (AttributeError, TypeError, ValueError, IndexError):
                continue
            self._reject(line, as_text(item.get("detail")), status)
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

    def _headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": f"local-telemetry-sdk/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _get_session(self):
        if self._session is None:
            import requests  # imported here: `import telemetry` stays light

            self._session = requests.Session()
        return self._session

    def _save_state(self) -> None:
        state = {
            "files": self._files,
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
