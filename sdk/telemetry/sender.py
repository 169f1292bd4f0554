"""The background sender: its thread, the base dir's lock, flush, delivery at exit and after fork."""

import atexit
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional

from .attempts import LineAttempts, held_lines
from .batches import FAILED, IDLE, WAIT, BatchDelivery
from .spool import (
    LOCK_NAME,
    NOFOLLOW,
    apply_retention,
    count_lines,
    load_cursor,
    make_private_dir,
    spool_files,
)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

logger = logging.getLogger("telemetry")

_RETENTION_CHECK_SECONDS = 600.0


def _lock_file(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


class Sender(BatchDelivery):
    """Deliver the spool of one base dir from a daemon thread; one process per base dir holds its lock."""

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
        super().__init__(
            raw_dir, api_url, token, batch_size, batch_seconds, http_timeout, max_backoff, max_line_attempts
        )
        self.flush_timeout = flush_timeout
        self.retention_days = retention_days
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
        self._reset_delivery_state()
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
                else:
                    # One batch per step, then the GIL goes to the agent's threads: a draining
                    # backlog must not hold it for the 5 ms switch interval at a time.
                    time.sleep(0)
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
