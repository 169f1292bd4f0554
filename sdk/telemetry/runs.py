"""A run's identity and the context objects `track_run` hands to the agent."""

import traceback
from contextvars import ContextVar
from datetime import datetime, timezone
from time import monotonic
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from .models import new_id
from .spool import run_head

if TYPE_CHECKING:
    from .client import TelemetryClient

_current_run: ContextVar[Optional[str]] = ContextVar("telemetry_current_run", default=None)
_UTC = timezone.utc


class _Run:
    __slots__ = ("event_id", "run_id", "agent_name", "job_type", "start_time", "started", "head", "fields")

    def __init__(self, run_id: str, agent_name: str, job_type: str, fields: Dict[str, Any]):
        self.event_id = new_id()
        self.run_id = run_id
        self.agent_name = agent_name
        self.job_type = job_type
        self.start_time = datetime.now(_UTC).isoformat()
        self.started = monotonic()
        self.head = run_head(self.event_id, run_id, agent_name, job_type, self.start_time)
        self.fields = fields


class RunContext:
    """What `track_run` yields: log events and set fields on the open run."""

    def __init__(self, run_id: str, record: Any, client: "TelemetryClient"):
        self.run_id = run_id
        self.record = record
        self._client = client

    @property
    def event_id(self) -> Optional[str]:
        """Return the run's event_id (the console's key for it)."""
        return getattr(self.record, "event_id", None)

    def log_event(self, event_type: str, payload: Any = None) -> None:
        """Add an event to the run's timeline."""
        self._client.log_event(self.run_id, event_type, payload)

    def set_metrics(self, **fields: Any) -> None:
        """Set any run-record fields (counters, summaries, metrics_json, status, ...)."""
        self._client.update_run(self.run_id, **fields)

    def associate_commit(
        self,
        commit_hash: str,
        commit_source: str,
        commit_author: Optional[str] = None,
        commit_timestamp: Optional[str] = None,
    ) -> Tuple[bool, str]:
        """Link a commit to this run."""
        return self._client.associate_commit(
            self.run_id, commit_hash, commit_source, commit_author, commit_timestamp
        )


class _TrackedRun:
    def __init__(
        self,
        client: "TelemetryClient",
        agent_name: str,
        job_type: str,
        trigger_type: str,
        fields: Dict[str, Any],
    ):
        self._client = client
        self._args = (agent_name, job_type, trigger_type, fields)
        self._token = None
        self.run_id: Optional[str] = None

    def __enter__(self) -> RunContext:
        agent_name, job_type, trigger_type, fields = self._args
        parent = _current_run.get()
        if parent and "parent_run_id" not in fields:
            fields = dict(fields, parent_run_id=parent)
        self.run_id = self._client.start_run(agent_name, job_type, trigger_type, **fields)
        self._token = _current_run.set(self.run_id)
        return RunContext(self.run_id, self._client._runs.get(self.run_id), self._client)

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            _current_run.reset(self._token)
        except (ValueError, RuntimeError):  # exited in another context than entered
            _current_run.set(None)
        client = self._client
        if exc_type is None:
            run = client._runs.get(self.run_id)
            chosen = run.fields.get("status") if run is not None else None
            client.end_run(self.run_id, chosen if chosen not in (None, "running") else "success")
        elif issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            client.end_run(self.run_id, "cancelled", error_summary=f"{exc_type.__name__}: {exc}")
        else:
            client.end_run(
                self.run_id,
                "failure",
                error_summary=f"{exc_type.__name__}: {exc}"[:2000],
                error_details="".join(traceback.format_exception(exc_type, exc, tb))[-65536:],
            )
        return False  # the exception, if any, goes on
