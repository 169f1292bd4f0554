"""Timestamps: one UTC text form for storage and answers, lenient parsing for filters."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

# The one form every time is stored (SQLite) and returned in; it sorts as text.
UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"

# SQLite expression that writes exactly UTC_FORMAT (strftime's %f has milliseconds).
SQLITE_NOW = "(strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000+00:00')"

STORED_LENGTH = len("2026-01-12T10:30:00.000000+00:00")
_HAS_ZONE = re.compile(r"(Z|z|[+-]\d{2}:?\d{2})$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_utc(value: datetime) -> str:
    """Render an aware datetime (naive means UTC) in the stored form."""
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    # isoformat writes UTC_FORMAT (zero-padded year included) at a tenth of strftime's cost.
    return value.isoformat(timespec="microseconds")


def parse_timestamp(text: str, *, require_zone: bool = True) -> datetime:
    """Parse ISO 8601 text into an aware UTC datetime.

    With `require_zone`, text without an offset is a ValueError (bodies); without it,
    a bare date or a naive time means UTC (query filters, legacy rows).
    """
    if not isinstance(text, str):
        raise ValueError("timestamp must be a string")
    if len(text) == STORED_LENGTH and text.endswith("+00:00") and text[10] == "T":
        try:  # the stored form (every stored time): no zone to check, already UTC
            return datetime.fromisoformat(text)
        except ValueError:
            pass  # not a time after all: the checks below say why
    raw = text.strip()
    if not raw or len(raw) > 64:
        raise ValueError("timestamp is empty or too long")
    if len(raw) == 10 and not require_zone:
        parsed_date = date.fromisoformat(raw)
        return datetime(parsed_date.year, parsed_date.month, parsed_date.day, tzinfo=UTC)
    has_zone = bool(_HAS_ZONE.search(raw))
    if require_zone and not has_zone:
        raise ValueError("timestamp must include a timezone, e.g. 2026-01-12T10:30:00Z")
    if raw[-1] in "Zz":
        raw = raw[:-1] + "+00:00"
    parsed = datetime.fromisoformat(raw.replace(" ", "T", 1) if "T" not in raw else raw)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
        raise ValueError("timestamp out of range") from None


def normalise_stored(text: str | None) -> str | None:
    """Rewrite any stored time text (legacy naive forms included) into UTC_FORMAT."""
    if text is None or text == "":
        return None
    try:
        return format_utc(parse_timestamp(text, require_zone=False))
    except ValueError:
        return text
