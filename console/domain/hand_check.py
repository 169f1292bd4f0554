"""Ordinary run records checked by hand, at a fraction of the pydantic models' cost.

A check here accepts only what the model accepts, with the values the model would
produce; anything unusual, valid or not, answers None and takes the model, which
also words the errors. Each field is checked by its declaration in the model (the
annotation as written: the modules use postponed annotations), so a field whose
declared type has no hand check here always takes the model. Property tests
(tests/fuzz/test_parsers.py) hold the two paths together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from pydantic import BaseModel

from console.domain.bounded_json import BAD_CHARS
from console.domain.validation import (
    MAX_COUNTER,
    MAX_TEXT_CHARS,
    RESERVED_EVENT_IDS,
    STATUSES,
    RunCreate,
    json_document,
    plain_timestamp,
)


def declarations(model: type[BaseModel]) -> dict[str, str]:
    """Each field of `model` and its annotation as written."""
    declared: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        declared.update(cls.__dict__.get("__annotations__", {}))
    return {name: declared[name] for name in model.model_fields}


def _text(value: Any) -> bool:
    if type(value) is not str or len(value) > MAX_TEXT_CHARS:
        return False
    # An ASCII string holds no surrogate: only NUL is left to look for (a tenth of the pattern's cost).
    return "\x00" not in value if value.isascii() else not BAD_CHARS.search(value)


# The declared types with a hand check, as small integer codes (cheaper to compare than the annotations).
TEXT, COUNTER, TIME, OPTIONAL_TIME, IDENTIFIER, EVENT_ID, STATUS, OPTIONAL_STATUS, JSON = range(9)
_CODES = {
    "Optional[Text]": TEXT, "Counter": COUNTER, "Timestamp": TIME, "Optional[Timestamp]": OPTIONAL_TIME,
    "Identifier": IDENTIFIER, "EventId": EVENT_ID, "Status": STATUS, "Optional[Status]": OPTIONAL_STATUS,
    "JSONValue": JSON,
}
_MODEL = -1  # a declared type without a hand check


def kinds(model: type[BaseModel]) -> dict[str, int]:
    """Each field of `model` and the code of its declared type (`_MODEL` when it has no hand check)."""
    return {name: _CODES.get(written, _MODEL) for name, written in declarations(model).items()}


def checked_fields(data: Mapping[str, Any], fields: Mapping[str, int]) -> Optional[dict[str, Any]]:
    """The fields of `data` that the model declares (`fields`: `kinds(model)`), as the model
    would hold them; unknown fields are left out, as the model ignores them. None when
    a value is unusual: the model decides it."""
    given: dict[str, Any] = {}
    for name, value in data.items():
        kind = fields.get(name)
        if kind is None:
            continue
        if kind == TEXT:
            if value is not None and not _text(value):
                return None
        elif kind == COUNTER:
            if value is None:
                value = 0
            elif type(value) is not int or not 0 <= value <= MAX_COUNTER:
                return None
        elif kind == TIME or kind == OPTIONAL_TIME:
            if value is not None or kind == TIME:
                value = plain_timestamp(value)
                if value is None:
                    return None
        elif kind == IDENTIFIER or kind == EVENT_ID:
            if not value or not _text(value) or (kind == EVENT_ID and value in RESERVED_EVENT_IDS):
                return None
        elif kind == STATUS or kind == OPTIONAL_STATUS:
            if (value is not None or kind == STATUS) and (type(value) is not str or value not in STATUSES):
                return None
        elif kind == JSON:
            try:
                value = json_document(value)
            except ValueError:
                return None
        else:
            return None  # rarer fields: the model
        given[name] = value
    return given


_RUN_CREATE = kinds(RunCreate)
_REQUIRED = tuple(name for name, field in RunCreate.model_fields.items() if field.is_required())
_DEFAULTS = {name: field.default for name, field in RunCreate.model_fields.items() if not field.is_required()}


def well_formed_run(item: Any) -> Optional[dict[str, Any]]:
    """A run record (POST /api/v1/runs/batch) checked by hand: every field of RunCreate
    as the validated model holds it (its `__dict__`), defaults filled in; None sends
    the item to RunCreate's validation."""
    if type(item) is not dict:
        return None
    given = checked_fields(item, _RUN_CREATE)
    if given is None:
        return None
    for name in _REQUIRED:
        if name not in given:
            return None
    values = _DEFAULTS.copy()
    values.update(given)
    return values
