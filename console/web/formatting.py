"""Jinja filters: durations, times, counts, JSON, statuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Optional

from console.core.timeutil import format_utc, parse_timestamp

STATUS_SYMBOLS = {
    "running": "◷",
    "success": "✓",
    "failure": "✕",
    "partial": "◐",
    "timeout": "◔",
    "cancelled": "⊘",
}


def as_datetime(value: Any) -> Optional[datetime]:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return parse_timestamp(str(value), require_zone=False)
    except ValueError:
        return None


def duration(ms: Any) -> str:
    """Milliseconds as "3 m 12 s", "1 h 02 m", "850 ms"; "" for nothing."""
    if ms is None or ms == "":
        return ""
    try:
        ms = int(ms)
    except (TypeError, ValueError):
        return ""
    if ms < 0:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms // 1000
    if seconds < 60:
        tenths = (ms % 1000) // 100
        return f"{seconds}.{tenths} s" if seconds < 10 and tenths else f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} m {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} m"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def seconds_duration(seconds: Any) -> str:
    try:
        return duration(int(float(seconds) * 1000))
    except (TypeError, ValueError):
        return ""


def utc_text(value: Any) -> str:
    """The stored UTC form (for the datetime attribute and the hover title)."""
    moment = as_datetime(value)
    return format_utc(moment) if moment else ""


def utc_short(value: Any) -> str:
    """A readable UTC time, shown until the script rewrites it in the local zone."""
    moment = as_datetime(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def number(value: Any) -> str:
    try:
        return f"{int(value):,}".replace(",", "\u2009")
    except (TypeError, ValueError):
        return ""


def percent(value: Any) -> str:
    if value is None:
        return "–"
    try:
        return f"{float(value) * 100:.1f} %"
    except (TypeError, ValueError):
        return "–"


def pretty_json(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def short_hash(value: Optional[str]) -> str:
    return (value or "")[:10]


def status_symbol(status: Optional[str]) -> str:
    return STATUS_SYMBOLS.get(status or "", "•")


def register(app) -> None:
    app.jinja_env.filters.update(
        duration=duration,
        seconds_duration=seconds_duration,
        utc_text=utc_text,
        utc_short=utc_short,
        number=number,
        percent=percent,
        pretty_json=pretty_json,
        short_hash=short_hash,
        status_symbol=status_symbol,
    )
