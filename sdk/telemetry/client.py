"""TelemetryClient: every call appends one spool line and returns; it never raises."""

import logging
import os
import socket
import threading
import weakref
from collections import OrderedDict
from datetime import datetime, timezone
from time import monotonic
from typing import Any, Dict, Optional, Tuple

from .config import TelemetryConfig
from .deadletters import count_dead_letters, last_dead_letter
from .models import (
    COUNTER_FIELDS,
    IGNORED_FIELDS,
    JSON_FIELDS,
    RUN_FIELDS,
    commit_problem,
    generate_run_id,
    get_iso8601_timestamp,
    normalize_status,
    run_id_problem,
)
from .otel import current_span_ids, with_span_ids
from .runs import _Run, _TrackedRun
from .sender import Sender
from .spool import SpoolWriter, make_line, utc_day

logger = logging.getLogger("telemetry")

_RECENT_RUNS = 4096  # ended runs kept so that associate_commit works after end_run
_UTC = timezone.utc
_senders: Dict[tuple, Sender] = {}
_senders_lock = threading.Lock()
_clients: "weakref.WeakSet[TelemetryClient]" = weakref.WeakSet()


def shared_sender(config: TelemetryConfig) -> Sender:
    """Return this process's sender for a base dir and console (one per pair)."""
    key = (str(config.ndjson_dir), config.api_url, config.api_token, config.api_enabled)
    with _senders_lock:
        sender = _senders.get(key)
        if sender is None:
            sender = _senders[key] = Sender(
                config.ndjson_dir,
                config.api_url,
                config.api_token,
                batch_size=config.batch_size,
                batch_seconds=config.batch_seconds,
                http_timeout=config.http_timeout,
                max_backoff=config.max_backoff,
                flush_timeout=config.flush_timeout if config.api_enabled else 0,
                retention_days=config.retention_days,
                max_line_attempts=config.max_line_attempts,
            )
        return sender


def _after_fork_in_child() -> None:
    global _senders_lock
    _senders_lock = threading.Lock()
    for sender in list(_senders.values()):
        sender.after_fork_in_child()
    for client in list(_clients):
        client._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _never_raise(default=None):
    """Wrap a public method so that a bug here is logged, counted, and never reaches the agent."""

    def wrap(func):
        def guarded(self, *args, **kwargs):
            try:
                return func(self, *args, **kwargs)
            except Exception as exc:
                self._errors += 1
                self._last_error = f"{func.__name__}: {type(exc).__name__}: {exc}"
                logger.exception("telemetry: %s failed", func.__name__)
                return default(*args) if callable(default) else default

        guarded.__name__ = func.__name__
        guarded.__doc__ = func.__doc__
        guarded.__wrapped__ = func
        return guarded

    return wrap


class TelemetryClient:
    """Record agent runs: spool first, deliver in the background, never raise."""

    def __init__(self, config: Optional[TelemetryConfig] = None):
        self._runs: Dict[str, _Run] = {}
        self._recent: OrderedDict[str, _Run] = OrderedDict()
        self._lock = threading.Lock()
        self._errors = 0
        self._last_error: Optional[str] = None
        self._invalid_calls = 0
        self._by_status: Dict[str, int] = {}
        self._run_id_counts = {
            "custom_accepted": 0,
            "generated": 0,
            "duplicates_detected": 0,
            "empty": 0,
            "too_long": 0,
            "invalid_chars": 0,
        }
        self._writer: Optional[SpoolWriter] = None
        self._sender: Optional[Sender] = None
        self._hb_thread: Optional[threading.Thread] = None
        self._hb_stop = threading.Event()
        self._git: Dict[str, str] = {}
        self._host: Optional[str] = None
        self.enabled = False
        try:
            self.config = config if config is not None else TelemetryConfig.from_env()
            if self.config.disabled:
                logger.info("telemetry: disabled by TELEMETRY_DISABLED")
                return
            fsync = self.config.spool_fsync == "always"
            self._writer = SpoolWriter(self.config.ndjson_dir, fsync=fsync)
            self._sender = shared_sender(self.config)
            self._host = socket.gethostname()
            if self.config.git_detect:
                from .gitinfo import detect_git

                self._git = detect_git()
            self.enabled = True
            _clients.add(self)
        except Exception as exc:  # a broken setting must not stop the agent
            self.config = getattr(self, "config", None) or TelemetryConfig()
            self._last_error = f"setup failed: {type(exc).__name__}: {exc}"
            logger.exception("telemetry: client setup failed; running as a no-op client")

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._hb_thread = None
        self._hb_stop = threading.Event()
        if self._writer is not None:
            self._writer._lock = threading.Lock()

    # ---- the public API ----------------------------------------------------------------

    @_never_raise(default=lambda agent_name="agent", *a: generate_run_id(str(agent_name)))
    def start_run(self, agent_name: str, job_type: str, trigger_type: str = "cli", **fields: Any) -> str:
        """Open a run and return its run_id at once."""
        run_id = fields.pop("run_id", None)
        if run_id is not None:
            problem = run_id_problem(run_id)
            if problem:
                self._run_id_counts[problem] += 1
                logger.warning("telemetry: custom run_id rejected (%s); generating one", problem)
                run_id = None
            else:
                self._run_id_counts["custom_accepted"] += 1
        if run_id is None:
            run_id = generate_run_id(agent_name)
            self._run_id_counts["generated"] += 1
        if not self.enabled:
            return run_id
        if run_id in self._runs:
            self._run_id_counts["duplicates_detected"] += 1
            logger.warning("telemetry: run_id %r is already open in this client", run_id)
        clean = self._clean_fields(fields, "start_run")
        clean["status"] = "running"
        span_ids = current_span_ids()  # the span current as the run starts (track_run's entry too)
        if span_ids:
            clean["context_json"] = with_span_ids(clean.get("context_json"), span_ids)
        clean.setdefault("trigger_type", str(trigger_type))
        if self._host:
            clean.setdefault("host", self._host)
        if self.config.agent_owner:
            clean.setdefault("agent_owner", self.config.agent_owner)
        for key, value in self._git.items():
            clean.setdefault(key, value)
        run = _Run(run_id, str(agent_name), str(job_type), clean)
        self._runs[run_id] = run
        self._emit(run, "run_started", clean)
        if self._hb_thread is None and self.config.heartbeat_seconds > 0:
            self._start_heartbeat()
        return run_id

    @_never_raise()
    def log_event(self, run_id: str, event_type: str, payload: Any = None) -> None:
        """Add an event to a run's timeline."""
        run = self._runs.get(run_id) or self._recent.get(run_id)
        if run is None:
            return self._invalid("log_event", run_id)
        self._emit(run, "event", {"event_type": str(event_type), "payload": payload})

    @_never_raise()
    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set fields on an open run (what RunContext.set_metrics calls)."""
        run = self._runs.get(run_id)
        if run is None:
            return self._invalid("set_metrics", run_id)
        clean = self._clean_fields(fields, "set_metrics")
        if clean:
            run.fields.update(clean)
            self._emit(run, "run_updated", clean)

    @_never_raise()
    def end_run(self, run_id: str, status: str = "success", **fields: Any) -> None:
        """Close a run with a final status (aliases accepted; unknown → failure)."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return self._invalid("end_run", run_id)
        canon = normalize_status(status)
        if canon is None or canon == "running":
            logger.warning("telemetry: end_run status %r is not a final status; using failure", status)
            canon = "failure"
        fields.pop("status", None)
        run.fields.update(self._clean_fields(fields, "end_run"))
        end = datetime.now(_UTC)
        run.fields["status"] = canon
        run.fields.setdefault("end_time", end.isoformat())
        run.fields.setdefault("duration_ms", int((monotonic() - run.started) * 1000))
        with self._lock:
            self._by_status[canon] = self._by_status.get(canon, 0) + 1
            self._recent[run_id] = run
            while len(self._recent) > _RECENT_RUNS:
                self._recent.popitem(last=False)
        self._emit(run, "run_ended", run.fields, end.isoformat())

    @_never_raise(default=lambda *a: (False, "internal error; see the telemetry logger"))
    def associate_commit(
        self,
        run_id: str,
        commit_hash: str,
        commit_source: str,
        commit_author: Optional[str] = None,
        commit_timestamp: Optional[str] = None,
    ) -> Tuple[bool, str]:
        """Link a commit to a run, during or after it; (True, msg) once it is on disk."""
        problem = commit_problem(commit_hash, commit_source)
        if problem:
            return False, problem
        if not self.enabled:
            return False, "telemetry is disabled"
        run = self._runs.get(run_id) or self._recent.get(run_id)
        if run is None:
            return False, f"unknown run_id {run_id!r} (not started by this client)"
        data = {"commit_hash": commit_hash.strip(), "commit_source": commit_source}
        if commit_author is not None:
            data["commit_author"] = str(commit_author)
        if commit_timestamp is not None:
            data["commit_timestamp"] = str(commit_timestamp)
        if not self._emit(run, "commit", data):
            return False, f"could not write the spool: {self._writer.last_error}"
        run.fields.update(git_commit_hash=data["commit_hash"], git_commit_source=commit_source)
        return True, f"commit {data['commit_hash']} associated with run {run_id}"

    def track_run(
        self, agent_name: str, job_type: str, trigger_type: str = "cli", **fields: Any
    ) -> _TrackedRun:
        """Return a context manager that opens a run and closes it by how the block ends."""
        return _TrackedRun(self, agent_name, job_type, trigger_type, fields)

    @_never_raise(default=0)
    def flush(self, timeout: float = 5.0) -> int:
        """Deliver now; return how many records of the base dir are still undelivered."""
        if not self.enabled:
            return 0
        if not self.config.api_enabled:
            return self._sender.pending()
        return self._sender.flush(timeout)

    @_never_raise()
    def close(self) -> None:
        """Stop heartbeats and close the spool file (the sender lives on for other clients)."""
        self._hb_stop.set()
        if self._writer is not None:
            self._writer.close()

    @_never_raise(default=lambda *a: {"error": "status unavailable"})
    def status(self) -> Dict[str, Any]:
        """Return what this client did and what its sender knows, including what was lost."""
        writer, sender = self._writer, self._sender
        return {
            "enabled": self.enabled,
            "base_dir": str(self.config.base_dir),
            "api_url": self.config.api_url,
            "open_runs": len(self._runs),
            "records_spooled": writer.written if writer else 0,
            "records_lost": writer.lost if writer else 0,
            "invalid_calls": self._invalid_calls,
            "internal_errors": self._errors,
            "pending": sender.pending() if sender else 0,
            "delivered": sender.delivered if sender else 0,
            "duplicates": sender.duplicates if sender else 0,
            "rejected": sender.rejected if sender else 0,
            "dead_letters": count_dead_letters(self.config.ndjson_dir) if sender else 0,
            "last_dead_letter": last_dead_letter(self.config.ndjson_dir) if sender else None,
            "held_lines": sender.held_lines() if sender else [],
            "sender_active": bool(sender and sender.holds_lock()),
            "in_backoff": bool(sender and sender.in_backoff()),
            "last_success_at": sender.last_success_at if sender else None,
            "last_error": (writer and writer.last_error)
            or (sender and sender.last_error)
            or self._last_error,
        }

    @_never_raise(default=lambda *a: {"error": "stats unavailable"})
    def get_stats(self) -> Dict[str, Any]:
        """Return run counts by status for this client (the older client's get_stats)."""
        ended = sum(self._by_status.values())
        return {
            "total_runs": ended + len(self._runs),
            "running": len(self._runs),
            "by_status": dict(self._by_status),
            "pending_api_posts": self.status()["pending"],
        }

    @_never_raise(default=lambda *a: {"error": "metrics unavailable", "timestamp": get_iso8601_timestamp()})
    def get_run_id_metrics(self) -> Dict[str, Any]:
        """Return how run ids were chosen (custom, generated, rejected) by this client."""
        c = dict(self._run_id_counts)
        rejected = c["empty"] + c["too_long"] + c["invalid_chars"]
        total = c["custom_accepted"] + c["generated"]
        return {
            "run_id_metrics": {
                "custom_accepted": c["custom_accepted"],
                "generated": c["generated"],
                "rejected": {
                    "empty": c["empty"],
                    "too_long": c["too_long"],
                    "invalid_chars": c["invalid_chars"],
                    "total": rejected,
                },
                "duplicates_detected": c["duplicates_detected"],
                "total_runs": total,
                "custom_percentage": round(100.0 * c["custom_accepted"] / total, 2) if total else 0.0,
            },
            "timestamp": get_iso8601_timestamp(),
        }

    # ---- internals ---------------------------------------------------------------------

    def _emit(self, run: _Run, kind: str, data: Dict[str, Any], ts: Optional[str] = None) -> bool:
        if ts is None:
            ts = datetime.now(_UTC).isoformat()
        if not self._writer.append(make_line(kind, run.head, data, ts), utc_day(ts)):
            return False
        if self.config.api_enabled:
            self._sender.notify()
        return True

    def _invalid(self, call: str, run_id: Any) -> None:
        self._invalid_calls += 1
        logger.warning("telemetry: %s for unknown or ended run_id %r ignored", call, run_id)

    def _clean_fields(self, fields: Dict[str, Any], call: str) -> Dict[str, Any]:
        clean: Dict[str, Any] = {}
        for key, value in fields.items():
            if key in IGNORED_FIELDS or value is None:
                continue
            if key not in RUN_FIELDS:
                logger.warning("telemetry: %s: unknown field %r ignored", call, key)
            elif key in COUNTER_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    logger.warning("telemetry: %s: %s=%r is not a count ≥ 0; ignored", call, key, value)
                else:
                    clean[key] = value
            elif key == "status":
                canon = normalize_status(value)
                if canon is None:
                    logger.warning("telemetry: %s: unknown status %r ignored", call, value)
                else:
                    clean[key] = canon
            elif key in JSON_FIELDS:
                clean[key] = value
            else:
                clean[key] = value.isoformat() if isinstance(value, datetime) else str(value)
        return clean

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._hb_thread is not None:
                return
            self._hb_thread = threading.Thread(
                target=self._heartbeat_loop, name="telemetry-heartbeat", daemon=True
            )
            self._hb_thread.start()

    def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_seconds
        stop = self._hb_stop
        while not stop.wait(interval):
            for run in list(self._runs.values()):
                try:
                    self._emit(run, "heartbeat", {})
                except Exception:
                    logger.debug("telemetry: heartbeat failed", exc_info=True)
