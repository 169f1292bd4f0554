"""Column types that store one way on SQLite and another on PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Text
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.types import TypeDecorator

from console.core.timeutil import format_utc, parse_timestamp


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime: fixed-form ISO text on SQLite, timestamptz on PostgreSQL."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = parse_timestamp(value, require_zone=False)
        if dialect.name == "postgresql":
            return value
        return format_utc(value)

    def process_result_value(self, value: Any, dialect):
        if value is None:
            return None
        if isinstance(value, datetime):
            return value
        try:
            return parse_timestamp(value, require_zone=False)
        except ValueError:
            return None


class JSONDocument(TypeDecorator):
    """Any JSON value: JSON text on SQLite, JSONB on PostgreSQL."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect):
        if value is None:
            return None
        if dialect.name == "postgresql":
            return value
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def process_result_value(self, value: Any, dialect):
        if value is None or not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value  # legacy rows may hold text that is not JSON: show it as is
