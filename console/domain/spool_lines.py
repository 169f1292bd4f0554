"""Spool lines v1 as the console reads them: the envelope, each kind's data, validation.

`parse_lines` checks every line on its own and never raises for one: a line that
fails is a rejection with a `detail`, the others go on to console/domain/ingest.py.
Ordinary lines take a hand-written check that accepts only what the models accept;
anything unusual takes the models, which also word the errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from pydantic import BaseModel, ValidationError, field_validator

from console.domain.bounded_json import BAD_CHARS, Unstorable
from console.domain.hand_check import checked_fields, kinds
from console.domain.validation import (
    MAX_TEXT_CHARS,
    RESERVED_EVENT_IDS,
    CommitAssociation,
    EventId,
    Identifier,
    JSONValue,
    RunFields,
    Status,
    Timestamp,
    error_details,
    plain_timestamp,
)

log = logging.getLogger("console.ingest")

SPOOL_VERSION = 1
KINDS = ("run_started", "run_updated", "run_ended", "event", "commit", "heartbeat")
RUN_KINDS = ("run_started", "run_updated", "run_ended")


class SpoolLine(BaseModel):
    """The envelope of one spool line (its `data` is checked per kind)."""

    v: int
    id: Identifier
    kind: str
    ts: Timestamp
    event_id: EventId
    run_id: Identifier
    agent_name: Identifier
    job_type: Identifier
    start_time: Timestamp
    data: Optional[dict[str, Any]] = None

    @field_validator("v")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SPOOL_VERSION or value < 1:
            raise ValueError(f"spool line version {value} is not supported (this console reads v{SPOOL_VERSION})")
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind {value[:40]!r}; expected one of {', '.join(KINDS)}")
        return value


class RunData(RunFields):
    """`data` of run_started / run_updated / run_ended."""

    status: Optional[Status] = None
    created_at: Optional[Timestamp] = None


class EventData(BaseModel):
    """`data` of an event line."""

    event_type: Identifier
    payload: JSONValue = None


class HeartbeatData(BaseModel):
    """`data` of a heartbeat line: nothing."""


_DATA_MODELS = {
    "run_started": RunData,
    "run_updated": RunData,
    "run_ended": RunData,
    "event": EventData,
    "commit": CommitAssociation,
    "heartbeat": HeartbeatData,
}


@dataclass(slots=True)
class Envelope:
    """A validated envelope: SpoolLine's fields, in a plain object (a tenth of a model's cost to make)."""

    id: str
    kind: str
    ts: datetime
    event_id: str
    run_id: str
    agent_name: str
    job_type: str
    start_time: datetime
    data: Optional[dict[str, Any]]

    @classmethod
    def of(cls, model: SpoolLine) -> Envelope:
        return cls(model.id, model.kind, model.ts, model.event_id, model.run_id, model.agent_name,
                   model.job_type, model.start_time, model.data)


@dataclass
class Line:
    index: int
    envelope: Envelope
    data: dict[str, Any]  # the fields the line's data gave, validated (what model_fields_set names)


_IDENTIFIERS = ("id", "event_id", "run_id", "agent_name", "job_type")


def well_formed_envelope(item: dict[str, Any]) -> Optional[Envelope]:
    """The envelope of an ordinary line, checked by hand; None sends it to SpoolLine's validation.

    Accepts only what SpoolLine accepts, with the values SpoolLine would produce;
    anything unusual, invalid or not, takes the model, which also words the errors.
    """
    kind = item.get("kind")
    if type(item.get("v")) is not int or item["v"] != SPOOL_VERSION or type(kind) is not str or kind not in KINDS:
        return None
    for key in _IDENTIFIERS:
        value = item.get(key)
        if type(value) is not str or not value or len(value) > MAX_TEXT_CHARS or BAD_CHARS.search(value):
            return None
    if item["event_id"] in RESERVED_EVENT_IDS:
        return None
    data = item.get("data")
    ts, start_time = plain_timestamp(item.get("ts")), plain_timestamp(item.get("start_time"))
    if ts is None or start_time is None or (data is not None and type(data) is not dict):
        return None
    return Envelope(
        item["id"], kind, ts, item["event_id"], item["run_id"], item["agent_name"], item["job_type"], start_time, data
    )


_RUN_DATA = kinds(RunData)


def well_formed_run_data(envelope: Envelope) -> Optional[dict[str, Any]]:
    """The given fields of a run line's data, checked by hand (console/domain/hand_check.py);
    None sends it to RunData's validation."""
    if envelope.kind not in RUN_KINDS:
        return None
    return checked_fields(envelope.data or {}, _RUN_DATA)


def _given(model: BaseModel) -> dict[str, Any]:
    return {name: getattr(model, name) for name in model.model_fields_set}


def parse_lines(document: Sequence[Any]) -> tuple[list[Line], list[dict[str, Any]]]:
    """Validate every line; returns (good lines, rejections). Never raises for a line."""
    good: list[Line] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(document):
        line_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        if type(item) is Unstorable:  # refused by the body's parser (too deep)
            rejected.append({"index": index, "id": None, "detail": item.reason})
            continue
        if not isinstance(item, dict):
            rejected.append({"index": index, "id": None, "detail": "a spool line must be a JSON object"})
            continue
        try:
            envelope = well_formed_envelope(item) or Envelope.of(SpoolLine.model_validate(item))
            data = well_formed_run_data(envelope)
            if data is None:
                data = _given(_DATA_MODELS[envelope.kind].model_validate(envelope.data or {}))
        except ValidationError as exc:
            rejected.append({"index": index, "id": line_id, "detail": error_details(exc, prefix=())})
            continue
        except Exception:  # noqa: BLE001 - one line's fault must not fail the others
            log.exception("ingest: line %d could not be read", index)
            rejected.append({"index": index, "id": line_id, "detail": "the console could not read this line"})
            continue
        good.append(Line(index, envelope, data))
    return good, rejected
