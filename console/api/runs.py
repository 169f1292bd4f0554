"""Run routes (compatible with local-telemetry HTTP API 3.0.0, plus ours)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union
from urllib.parse import urlencode

from flask import current_app, g, request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from console.api import api_bp
from console.api.spec import NEXT_PAGE_LINK, route
from console.domain import group_commit, runs
from console.domain.bounded_json import Unstorable
from console.domain.errors import DomainError
from console.domain.hand_check import well_formed_run
from console.domain.records import run_to_dict
from console.domain.validation import (
    CommitAssociation,
    RunCreate,
    RunUpdate,
    bounded_offset,
    clean_text,
    error_details,
    searchable_q,
)
from console.http import auth
from console.http.errors import ApiError, error_response
from console.store.writelock import queued_write

# ---------------------------------------------------------------- models


# Query values are short (a request line is at most a few KiB through gunicorn).
Filter = Annotated[str, Field(max_length=1000), AfterValidator(clean_text)]


class RunListQuery(BaseModel):
    """GET /api/v1/runs: filters (exact unless said), paging."""

    model_config = ConfigDict(extra="ignore")

    agent_name: Optional[Filter] = None
    status: Optional[Filter] = Field(None, description="canon or alias; unknown is a 400")
    job_type: Optional[Filter] = None
    created_before: Optional[Filter] = Field(None, description="exclusive; ISO 8601, date or naive = UTC")
    created_after: Optional[Filter] = Field(None, description="exclusive")
    start_time_from: Optional[Filter] = Field(None, description="inclusive")
    start_time_to: Optional[Filter] = Field(None, description="inclusive")
    limit: int = Field(100, ge=1, le=1000)
    offset: Annotated[int, Field(ge=0, description="at most 1,000,000 (else 422: use cursor)"),
                      AfterValidator(bounded_offset)] = 0
    cursor: Optional[Filter] = Field(None, description="opaque; from the Link rel=next header (offset is then unused)")
    q: Optional[Annotated[Filter, AfterValidator(searchable_q)]] = Field(
        None, description="substring of run_id, event_id or error_summary; 3 characters or more (else 422)")
    parent_run_id: Optional[Filter] = None
    environment: Optional[Filter] = None
    host: Optional[Filter] = None


class RunRecord(BaseModel):
    """A stored run as the API returns it (every time as YYYY-MM-DDTHH:MM:SS.ffffff+00:00)."""

    id: int
    event_id: str
    run_id: str
    schema_version: Optional[int]
    created_at: Optional[str]
    updated_at: Optional[str]
    start_time: Optional[str]
    end_time: Optional[str]
    agent_name: str
    agent_owner: Optional[str]
    job_type: str
    status: str
    product: Optional[str]
    product_family: Optional[str]
    platform: Optional[str]
    subdomain: Optional[str]
    website: Optional[str]
    website_section: Optional[str]
    item_name: Optional[str]
    items_discovered: Optional[int]
    items_succeeded: Optional[int]
    items_failed: Optional[int]
    items_skipped: Optional[int]
    duration_ms: Optional[int]
    input_summary: Optional[str]
    output_summary: Optional[str]
    source_ref: Optional[str]
    target_ref: Optional[str]
    error_summary: Optional[str]
    error_details: Optional[str]
    git_repo: Optional[str]
    git_branch: Optional[str]
    git_commit_hash: Optional[str]
    git_run_tag: Optional[str]
    git_commit_source: Optional[str]
    git_commit_author: Optional[str]
    git_commit_timestamp: Optional[str]
    host: Optional[str]
    environment: Optional[str]
    trigger_type: Optional[str]
    metrics_json: Any
    context_json: Any
    api_posted: bool
    api_posted_at: Optional[str]
    api_retry_count: Optional[int]
    insight_id: Optional[str]
    parent_run_id: Optional[str]
    commit_url: Optional[str]
    repo_url: Optional[str]


class RunCreated(BaseModel):
    status: Literal["created"]
    event_id: str
    run_id: str


class RunDuplicate(BaseModel):
    status: Literal["duplicate"]
    event_id: str
    message: str


# A batch item is validated on its own (an invalid one is reported, not fatal);
# the document still shows it as a run record.
BatchItem = Annotated[Any, WithJsonSchema(RunCreate.model_json_schema(mode="validation"))]


class RunsEnvelope(BaseModel):
    runs: list[BatchItem]


class RunBatch(RootModel[Union[list[BatchItem], RunsEnvelope]]):
    """POST /api/v1/runs/batch: a bare array of run records, or {"runs": [...]}."""

    @model_validator(mode="before")
    @classmethod
    def _one_of_two_shapes(cls, value: Any) -> Any:
        if isinstance(value, list) or (isinstance(value, dict) and isinstance(value.get("runs"), list)):
            return value
        raise ValueError('expected a JSON array of run records or an object {"runs": [...]}')

    def items(self) -> list[Any]:
        return self.root if isinstance(self.root, list) else self.root.runs


class ErrorItem(BaseModel):
    loc: list[Union[str, int]]
    msg: str
    type: str


class BatchError(BaseModel):
    index: int
    event_id: Optional[str]
    detail: list[ErrorItem]


class BatchResult(BaseModel):
    status: Literal["created", "partial"]
    inserted: int
    duplicates: int
    errors: list[BatchError]
    total: int


class RunUpdated(BaseModel):
    event_id: str
    updated: Literal[True]
    fields_updated: list[str]


class CommitAssociated(BaseModel):
    status: Literal["success"]
    event_id: str
    run_id: str
    commit_hash: str


class CommitUrl(BaseModel):
    commit_url: Optional[str]


class RepoUrl(BaseModel):
    repo_url: Optional[str]


# ---------------------------------------------------------------- helpers


def _db():
    return current_app.extensions["telemetry_db"]


def _settings():
    return current_app.config["SETTINGS"]


def _record(row) -> dict[str, Any]:
    return run_to_dict(row, _settings().git_hosts)


@api_bp.app_errorhandler(DomainError)
def on_domain_error(exc: DomainError):
    return error_response(exc.status, exc.detail)


auth.register(api_bp)


@api_bp.before_request
def announce_single_insert():
    # Tell the group commit a run is on its way, so that its writer waits for it briefly.
    if request.endpoint == "api.create_run":
        group_commit.committer(current_app).arrive()
        g.group_commit_arrived = True


@api_bp.teardown_request
def forget_single_insert(_exc):
    if g.pop("group_commit_arrived", False):
        group_commit.committer(current_app).leave()


# ---------------------------------------------------------------- routes


@route(api_bp, "/runs", "POST", summary="Create one run (idempotent on event_id)", tags=["runs"],
       body=RunCreate, responses={201: RunCreated, 200: RunDuplicate}, auth="write", scope="agent")
def create_run(body: RunCreate):
    created = group_commit.create_run(current_app, body, arrived=g.pop("group_commit_arrived", False))
    if created:
        return {"status": "created", "event_id": body.event_id, "run_id": body.run_id}, 201
    return {"status": "duplicate", "event_id": body.event_id,
            "message": "a run with this event_id is already stored; nothing changed"}, 200


@route(api_bp, "/runs/batch", "POST", summary="Create many runs; invalid items are listed, valid ones stored",
       tags=["runs"], body=RunBatch, responses={201: BatchResult}, auth="write", scope="agent")
def create_runs_batch(body: RunBatch):
    items = body.items()
    limit = _settings().max_batch_items
    if len(items) > limit:
        raise ApiError(413, f"batch holds {len(items)} runs; the limit is {limit} (TELEMETRY_MAX_BATCH_ITEMS)")
    records, errors = validate_items(items)
    if records:
        db = _db()
        batch = runs.prepare_batch(records, db.dialect)  # the Python work, before the write lock
        outcome = queued_write(db, lambda session: runs.create_prepared_batch(session, batch), shared=True)
        inserted, duplicates = outcome.inserted, outcome.duplicates
    else:
        inserted = duplicates = 0
    return {
        "status": "partial" if errors else "created",
        "inserted": inserted,
        "duplicates": duplicates,
        "errors": errors,
        "total": len(items),
    }, 201


def validate_items(items: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """RunCreate's validated fields of each valid item, and an error entry for each invalid one.

    An ordinary record takes the hand check (console/domain/hand_check.py), anything
    else the model, which also words the errors."""
    records: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    validate = RunCreate.model_validate
    for index, item in enumerate(items):
        if type(item) is Unstorable:  # refused by the body's parser (too deep)
            errors.append({"index": index, "event_id": None,
                           "detail": [{"loc": [], "msg": item.reason, "type": "value_error"}]})
            continue
        fields = well_formed_run(item)
        if fields is not None:
            records.append(fields)
            continue
        try:
            records.append(validate(item).__dict__)
        except ValidationError as exc:
            event_id = item.get("event_id") if isinstance(item, dict) else None
            errors.append({
                "index": index,
                "event_id": event_id if isinstance(event_id, str) else None,
                "detail": error_details(exc, prefix=()),
            })
    return records, errors


@route(api_bp, "/runs", "GET", summary="List runs, newest first (filters, offset or cursor paging)", tags=["runs"],
       query=RunListQuery, responses={200: list[RunRecord]}, headers={200: {"Link": NEXT_PAGE_LINK}})
def list_runs(query: RunListQuery):
    filters = runs.RunFilters(**{name: getattr(query, name) for name in runs.RunFilters.__dataclass_fields__})
    with _db().read() as session:
        rows, next_cursor = runs.list_runs(session, filters, limit=query.limit, offset=query.offset,
                                           cursor=query.cursor)
        body = [_record(row) for row in rows]
    response = current_app.json.response(body)
    if next_cursor:
        response.headers["Link"] = next_link(next_cursor)
    return response


@route(api_bp, "/runs/<event_id>", "GET", summary="One run", tags=["runs"], responses={200: RunRecord})
def get_run(event_id: str):
    with _db().read() as session:
        return _record(runs.get_run(session, event_id))


@route(api_bp, "/runs/<event_id>", "PATCH", summary="Update fields of a run (null fields are ignored)",
       tags=["runs"], body=RunUpdate, responses={200: RunUpdated}, auth="write", scope="agent")
def update_run(event_id: str, body: RunUpdate):
    fields = _db().write(lambda session: runs.update_run(session, event_id, body))
    return {"event_id": event_id, "updated": True, "fields_updated": fields}


@route(api_bp, "/runs/<event_id>", "DELETE", summary="Delete a run and its events (audited)", tags=["runs"],
       responses={204: None}, auth="write")
def delete_run(event_id: str):
    actor = auth.api_actor()
    _db().write(lambda session: runs.delete_run(session, event_id, actor=actor))
    return "", 204


@route(api_bp, "/runs/<event_id>/associate-commit", "POST", summary="Link a commit to a run", tags=["runs"],
       body=CommitAssociation, responses={200: CommitAssociated}, auth="write", scope="agent")
def associate_commit(event_id: str, body: CommitAssociation):
    old = _db().write(lambda session: runs.associate_commit(session, event_id, body))
    return {"status": "success", "event_id": event_id, "run_id": old["run_id"], "commit_hash": body.commit_hash}


@route(api_bp, "/runs/<event_id>/commit-url", "GET", summary="Link to the run's commit on its host", tags=["runs"],
       responses={200: CommitUrl}, auth="write", scope="agent")
def commit_url(event_id: str):
    with _db().read() as session:
        return {"commit_url": _record(runs.get_run(session, event_id))["commit_url"]}


@route(api_bp, "/runs/<event_id>/repo-url", "GET", summary="Link to the run's repository", tags=["runs"],
       responses={200: RepoUrl}, auth="write", scope="agent")
def repo_url(event_id: str):
    with _db().read() as session:
        return {"repo_url": _record(runs.get_run(session, event_id))["repo_url"]}


def next_link(cursor: str) -> str:
    """The absolute URL of the next page: this request's query with `cursor` set."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("cursor", "offset")]
    args.append(("cursor", cursor))
    return f'<{request.base_url}?{urlencode(args)}>; rel="next"'
