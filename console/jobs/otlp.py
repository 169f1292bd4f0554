"""A run as an OpenTelemetry span: OTLP/HTTP protobuf bodies for the export job.

docs/otel.md describes the mapping. In short: one span per run; a run that recorded
`otel_trace_id` and `otel_span_id` in its context keeps them and joins the agent's
own trace; any other run takes its trace id from its nearest ancestor that recorded
one, else from the topmost run of its `parent_run_id` chain, and its span id from its
`event_id`, so that children land in their parent's trace.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from sqlalchemy.orm import Session

from console.store import search
from console.store.models import agent_runs, run_events

CONTENT_TYPE = "application/x-protobuf"
# A child whose parent (or an ancestor) is not stored yet waits this long after its
# last change before it is exported without it. Shorter than the export scan's
# SETTLED_AFTER, so that the scan watermark never passes a waiting run.
PARENT_WAIT = timedelta(minutes=5)
# Deeper chains (or a cycle of run_ids) stop here; the last run reached is the top.
MAX_CHAIN = 64
# Span events per run; the rest are counted in dropped_events_count.
MAX_EVENTS = 1000
# A longer attribute string is cut (backends drop whole spans over their own limits).
MAX_VALUE_CHARS = 4096
MAX_KEY_CHARS = 256

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = (-(2**63), 2**63 - 1)
_ERROR_STATUSES = ("failure", "timeout")
# Columns a run's span needs, for itself and for each run of its chain.
_CHAIN_COLUMNS = (agent_runs.c.event_id, agent_runs.c.run_id, agent_runs.c.parent_run_id, agent_runs.c.start_time,
                  agent_runs.c.context_json)


@dataclass(frozen=True)
class SpanIds:
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes = b""
    link: tuple[bytes, bytes] | None = None  # a parent's span in another trace
    broken: bool = False  # an ancestor named by parent_run_id is not stored


def recorded_ids(context: Any) -> tuple[bytes, bytes] | None:
    """The trace and span id the SDK recorded in a run's context, when both are valid hex."""
    if not isinstance(context, Mapping):
        return None
    trace, span = context.get("otel_trace_id"), context.get("otel_span_id")
    if not isinstance(trace, str) or not isinstance(span, str):
        return None
    trace, span = trace.strip().lower(), span.strip().lower()
    if not _TRACE_ID.match(trace) or not _SPAN_ID.match(span) or int(trace, 16) == 0 or int(span, 16) == 0:
        return None
    return bytes.fromhex(trace), bytes.fromhex(span)


def derived_trace_id(top_event_id: str) -> bytes:
    return _nonzero(hashlib.sha256(b"local-telemetry trace " + top_event_id.encode()).digest()[:16])


def derived_span_id(event_id: str) -> bytes:
    return _nonzero(hashlib.sha256(b"local-telemetry span " + event_id.encode()).digest()[:8])


def _nonzero(value: bytes) -> bytes:
    """An all-zero id is invalid in OTLP."""
    return value if any(value) else value[:-1] + b"\x01"


def resolve_parent(session: Session, parent_run_id: str, child_start: datetime, child_event_id: str):
    """The stored run a `parent_run_id` names (run_id is not unique).

    Of the runs with that run_id, the one that started last at or before the child;
    if every one started after it, the earliest. Ties go to the first stored.
    """
    same = sa.select(*_CHAIN_COLUMNS).where(search.run_id_is(session.get_bind().dialect.name, parent_run_id),
                                           agent_runs.c.event_id != child_event_id)
    before = session.execute(same.where(agent_runs.c.start_time <= child_start)
                             .order_by(agent_runs.c.start_time.desc(), agent_runs.c.id).limit(1)).mappings().first()
    if before is not None:
        return before
    return session.execute(same.order_by(agent_runs.c.start_time, agent_runs.c.id).limit(1)).mappings().first()


def chain_of(session: Session, run: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], bool]:
    """The run and its ancestors, nearest first; and whether an ancestor is missing."""
    chain = [run]
    position = {run["event_id"]: 0}
    while len(chain) < MAX_CHAIN:
        current = chain[-1]
        if not current["parent_run_id"] or current["parent_run_id"] == current["run_id"]:
            return chain, False  # a run named as its own parent is a top
        parent = resolve_parent(session, current["parent_run_id"], current["start_time"], current["event_id"])
        if parent is None:
            return chain, True
        if parent["event_id"] in position:
            # A cycle of run_ids: its run with the lowest event_id is the top, whichever run we began at.
            top = min(chain[position[parent["event_id"]]:], key=lambda r: r["event_id"])
            return chain[:position[top["event_id"]] + 1], False
        position[parent["event_id"]] = len(chain)
        chain.append(parent)
    return chain, False


def _trace_of(chain: list[Mapping[str, Any]]) -> bytes:
    for run in chain:
        ids = recorded_ids(run["context_json"])
        if ids:
            return ids[0]
    return derived_trace_id(chain[-1]["event_id"])


def span_ids(session: Session, run: Mapping[str, Any]) -> SpanIds:
    """The ids of a run's span and of its parent span."""
    chain, broken = chain_of(session, run)
    own = recorded_ids(run["context_json"])
    trace_id = own[0] if own else _trace_of(chain)
    span_id = own[1] if own else derived_span_id(run["event_id"])
    if len(chain) == 1:
        return SpanIds(trace_id, span_id, broken=broken)
    parent = chain[1]
    parent_recorded = recorded_ids(parent["context_json"])
    parent_span = parent_recorded[1] if parent_recorded else derived_span_id(parent["event_id"])
    parent_trace = _trace_of(chain[1:])
    if parent_trace == trace_id:
        return SpanIds(trace_id, span_id, parent_span_id=parent_span, broken=broken)
    return SpanIds(trace_id, span_id, link=(parent_trace, parent_span), broken=broken)


def waits_for_parent(ids: SpanIds, run: Mapping[str, Any], now: datetime) -> bool:
    """True while a run whose ancestor is missing is still within PARENT_WAIT of its last change."""
    changed = run["updated_at"] or run["end_time"] or run["start_time"]
    return ids.broken and changed is not None and now - changed < PARENT_WAIT


def unix_nanos(value: datetime | None) -> int:
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return max(0, (value - _EPOCH) // timedelta(microseconds=1) * 1000)


def any_value(value: Any) -> AnyValue:
    """A JSON value as an OTLP attribute value; objects and arrays travel as JSON text."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"), default=str)
    return AnyValue(string_value=value[:MAX_VALUE_CHARS])


def _attributes(pairs: list[tuple[str, Any]]) -> list[KeyValue]:
    return [KeyValue(key=key[:MAX_KEY_CHARS], value=any_value(value)) for key, value in pairs
            if value is not None and value != ""]


def run_attributes(run: Mapping[str, Any]) -> list[KeyValue]:
    pairs: list[tuple[str, Any]] = [
        ("telemetry.run_id", run["run_id"]),
        ("telemetry.event_id", run["event_id"]),
        ("telemetry.status", run["status"]),
        ("telemetry.job_type", run["job_type"]),
        *((f"telemetry.{name}", run[name]) for name in
          ("items_discovered", "items_succeeded", "items_failed", "items_skipped")),
        ("telemetry.parent_run_id", run["parent_run_id"]),
        ("host.name", run["host"]),
        ("deployment.environment.name", run["environment"]),
        ("vcs.repository.url.full", run["git_repo"]),
        ("vcs.ref.head.name", run["git_branch"]),
        ("vcs.ref.head.type", "branch" if run["git_branch"] else None),
        ("vcs.ref.head.revision", run["git_commit_hash"]),
    ]
    return _attributes(pairs)


def _event_attributes(payload: Any) -> list[KeyValue]:
    if isinstance(payload, Mapping):
        return _attributes([(str(key), value) for key, value in payload.items()])
    return _attributes([("payload", payload)])


def run_span(session: Session, run: Mapping[str, Any], ids: SpanIds) -> Span:
    events = session.execute(
        sa.select(run_events.c.event_type, run_events.c.timestamp, run_events.c.payload_json)
        .where(run_events.c.event_id == run["event_id"])
        .order_by(run_events.c.timestamp, run_events.c.id).limit(MAX_EVENTS)).all()
    dropped = 0
    if len(events) == MAX_EVENTS:
        total = session.execute(sa.select(sa.func.count()).select_from(run_events)
                                .where(run_events.c.event_id == run["event_id"])).scalar()
        dropped = total - MAX_EVENTS
    start = unix_nanos(run["start_time"])
    end = unix_nanos(run["end_time"]) or start + max(0, run["duration_ms"] or 0) * 1_000_000
    if run["status"] in _ERROR_STATUSES:
        status = Status(code=Status.STATUS_CODE_ERROR, message=(run["error_summary"] or run["status"])[:MAX_VALUE_CHARS])
    else:
        status = Status(code=Status.STATUS_CODE_UNSET)
    span = Span(
        trace_id=ids.trace_id, span_id=ids.span_id, parent_span_id=ids.parent_span_id,
        name=run["job_type"] or "run", kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start, end_time_unix_nano=max(end, start),
        attributes=run_attributes(run), status=status, dropped_events_count=dropped,
        events=[Span.Event(time_unix_nano=unix_nanos(timestamp), name=event_type or "event",
                           attributes=_event_attributes(payload)) for event_type, timestamp, payload in events],
    )
    if ids.link:
        span.links.append(Span.Link(trace_id=ids.link[0], span_id=ids.link[1]))
    return span


def export_request(session: Session, run: Mapping[str, Any], ids: SpanIds, version: str) -> bytes:
    """The ExportTraceServiceRequest of one run, serialised."""
    resource = Resource(attributes=_attributes([("service.name", run["agent_name"] or "unknown_service"),
                                                ("telemetry.agent_owner", run["agent_owner"])]))
    scope = InstrumentationScope(name="local-telemetry-console", version=version)
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=[run_span(session, run, ids)])])])
    return request.SerializeToString()


def partial_rejection(body: bytes) -> str | None:
    """The receiver's reason when a 2xx answer still rejected the span (OTLP partial success)."""
    if not body:
        return None
    answer = ExportTraceServiceResponse()
    try:
        answer.ParseFromString(body)
    except DecodeError:  # not protobuf (a proxy's page): the 2xx stands
        return None
    if answer.partial_success.rejected_spans:
        return f"rejected_spans={answer.partial_success.rejected_spans}: {answer.partial_success.error_message}"
    return None
