"""Request models, status aliases and the shape of validation errors.

Every body is checked here, before anything touches the database: a bad status or a
negative counter is a 422 with one item per bad field, never a database error. The
bounded checks of hostile values (depth, numbers, keys, NUL) are console/domain/bounded_json.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from console.core.timeutil import parse_timestamp
from console.domain.bounded_json import (
    MAX_JSON_DEPTH,
    TooDeep,
    Unstorable,
    check_text,
    json_field,
    loads,
    nested_deeper_than,
)
from console.store.search import MIN_QUERY_CHARS

STATUSES = ("running", "success", "failure", "partial", "timeout", "cancelled")
STATUS_ALIASES = {"failed": "failure", "completed": "success", "succeeded": "success", "canceled": "cancelled"}
COMMIT_SOURCES = ("manual", "llm", "ci")

# A text field longer than this is refused (422), never cut (docs/api.md "Limits").
MAX_TEXT_CHARS = 1_000_000
# GET /api/v1/runs: an offset makes the database skip that many rows, so it is capped;
# deeper pages follow the keyset cursor, which costs the same at any depth.
MAX_OFFSET = 1_000_000
OFFSET_TOO_DEEP = (f"offset is at most {MAX_OFFSET:,}: page deeper with cursor "
                   '(follow the Link rel="next" header of each answer)')
SHORT_Q = (f"q needs at least {MIN_QUERY_CHARS} characters: the search index (trigrams) cannot "
           "find a shorter substring without reading every run")


class BodyError(ValueError):
    """A body that is not JSON at all (400)."""


def normalise_status(value: Any) -> Any:
    """Map an alias (`failed`, `completed`, ...) to the canon; leave the rest to validation."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        return STATUS_ALIASES.get(lowered, lowered)
    return value


clean_text = check_text
json_document = json_field


def bounded_offset(value: int) -> int:
    """An offset the database can skip cheaply (422 beyond MAX_OFFSET)."""
    if value > MAX_OFFSET:
        raise ValueError(OFFSET_TOO_DEEP)
    return value


def searchable_q(value: str) -> str:
    """A `q` the search index can answer (422 when shorter than MIN_QUERY_CHARS)."""
    if len(value) < MIN_QUERY_CHARS:
        raise ValueError(SHORT_Q)
    return value


# Years outside this range do not survive the fixed text form (which sorts as text).
MIN_YEAR, MAX_YEAR = 1000, 9998


def in_storable_range(value: datetime) -> datetime:
    """`value`, or ValueError when its UTC year cannot be stored in the fixed form."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"timestamp out of range: the year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value


def plain_timestamp(value: Any) -> Optional[datetime]:
    """The usual zoned ISO 8601 text, by datetime's C parser, as UTC in the storable range.

    None for anything else: parse_timestamp decides those, and words the error.
    """
    if type(value) is not str:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return None
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return parsed if MIN_YEAR <= parsed.year <= MAX_YEAR else None


def _aware_timestamp(value: Any) -> Any:
    if isinstance(value, str):
        parsed = plain_timestamp(value)
        if parsed is not None:
            return parsed
        try:
            return in_storable_range(parse_timestamp(value, require_zone=True))
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"invalid timestamp: {exc}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp must include a timezone")
        try:
            return in_storable_range(value.astimezone(UTC))
        except OverflowError:
            raise ValueError("timestamp out of range") from None
    raise ValueError("timestamp must be an ISO 8601 string with a timezone")


def _timestamp_text(value: Any) -> Any:
    """Validate a time that is only shown, and keep it exactly as sent."""
    if value is None:
        return None
    _aware_timestamp(value)
    return value


def _null_is_zero(value: Any) -> Any:
    return 0 if value is None else value


Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS), AfterValidator(clean_text)]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(clean_text)]

# Path words under /api/v1/runs/ that a GET would answer as a route, not as a run.
RESERVED_EVENT_IDS = frozenset({"stale"})


def _not_reserved(value: str) -> str:
    if value in RESERVED_EVENT_IDS:
        raise ValueError(f"event_id {value!r} is reserved: GET /api/v1/runs/{value} is another endpoint")
    return value


EventId = Annotated[Identifier, AfterValidator(_not_reserved)]
Status = Annotated[Literal[STATUSES], BeforeValidator(normalise_status)]
Timestamp = Annotated[datetime, BeforeValidator(_aware_timestamp)]
ShownTimestamp = Annotated[Optional[str], BeforeValidator(_timestamp_text)]
MAX_COUNTER = 2**62
Counter = Annotated[int, BeforeValidator(_null_is_zero), Field(ge=0, le=MAX_COUNTER)]
JSONValue = Annotated[Any, AfterValidator(json_document)]
CommitSource = Literal[COMMIT_SOURCES]


class _Model(BaseModel):
    # Unknown fields are ignored: older clients send more than we read.
    model_config = ConfigDict(extra="ignore", strict=False, str_strip_whitespace=False)


class RunFields(_Model):
    """The optional fields of a run record, shared by POST, PATCH and the spool."""

    end_time: Optional[Timestamp] = None
    items_discovered: Counter = 0
    items_succeeded: Counter = 0
    items_failed: Counter = 0
    items_skipped: Counter = 0
    duration_ms: Counter = 0
    metrics_json: JSONValue = None
    context_json: JSONValue = None
    api_posted: bool = False
    api_posted_at: Optional[Text] = None
    api_retry_count: Counter = 0
    product: Optional[Text] = None
    product_family: Optional[Text] = None
    platform: Optional[Text] = None
    subdomain: Optional[Text] = None
    website: Optional[Text] = None
    website_section: Optional[Text] = None
    item_name: Optional[Text] = None
    input_summary: Optional[Text] = None
    output_summary: Optional[Text] = None
    source_ref: Optional[Text] = None
    target_ref: Optional[Text] = None
    error_summary: Optional[Text] = None
    error_details: Optional[Text] = None
    git_repo: Optional[Text] = None
    git_branch: Optional[Text] = None
    git_commit_hash: Optional[Text] = None
    git_run_tag: Optional[Text] = None
    git_commit_source: Optional[CommitSource] = None
    git_commit_author: Optional[Text] = None
    git_commit_timestamp: ShownTimestamp = None
    host: Optional[Text] = None
    environment: Optional[Text] = None
    trigger_type: Optional[Text] = None
    insight_id: Optional[Text] = None
    parent_run_id: Optional[Text] = None
    agent_owner: Optional[Text] = None


class RunCreate(RunFields):
    """POST /api/v1/runs: one run record."""

    event_id: EventId
    run_id: Identifier
    agent_name: Identifier
    job_type: Identifier
    start_time: Timestamp
    created_at: Optional[Timestamp] = None
    status: Status = "running"


class RunUpdate(_Model):
    """PATCH /api/v1/runs/{event_id}: null fields are ignored."""

    status: Optional[Status] = None
    end_time: Optional[Timestamp] = None
    duration_ms: Optional[Counter] = None
    error_summary: Optional[Text] = None
    error_details: Optional[Text] = None
    input_summary: Optional[Text] = None
    output_summary: Optional[Text] = None
    items_discovered: Optional[Counter] = None
    items_succeeded: Optional[Counter] = None
    items_failed: Optional[Counter] = None
    items_skipped: Optional[Counter] = None
    metrics_json: JSONValue = None
    context_json: JSONValue = None
    git_commit_source: Optional[CommitSource] = None
    git_commit_author: Optional[Text] = None
    git_commit_timestamp: ShownTimestamp = None


class CommitAssociation(_Model):
    """POST /api/v1/runs/{event_id}/associate-commit."""

    commit_hash: Annotated[str, Field(min_length=7, max_length=40), AfterValidator(clean_text)]
    commit_source: CommitSource
    commit_author: Optional[Text] = None
    commit_timestamp: ShownTimestamp = None


def parse_json_body(raw: bytes) -> Any:
    """Decode a request body; BodyError when it is not JSON, ValueError when too deep.

    Numbers that no field stores come back as `Unstorable` (bounded_json.loads), so
    that only the record holding one is refused; so does an item of a top-level array
    nested too deep. Past the parser's own recursion limit the body is refused whole.
    """
    try:
        document = loads(raw)
    except TooDeep as exc:
        raise ValueError(str(exc)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BodyError(f"request body is not valid JSON: {exc}") from None
    if type(document) is list:
        # A batch: an item nested too deep is refused alone (the others are judged).
        too_deep = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        return [Unstorable(too_deep) if nested_deeper_than(item, MAX_JSON_DEPTH - 1) else item for item in document]
    if nested_deeper_than(document, MAX_JSON_DEPTH):
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return document


def error_details(exc: ValidationError, prefix: tuple = ("body",)) -> list[dict]:
    """Pydantic errors as `{"loc", "msg", "type"}` items: no input echoed back."""
    return [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
