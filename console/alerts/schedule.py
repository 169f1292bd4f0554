"""When a `missing` rule expects a run: cron expressions in a time zone, or a period.

A cron expression is read by APScheduler's CronTrigger and walked in local wall
time; each wall time becomes an instant by these rules (zoneinfo):

- a local time that does not exist (the hour skipped when clocks go forward)
  means the next instant that does: 02:30 on the spring day in Europe/Berlin is
  03:00 CEST;
- a local time that happens twice (the hour repeated when clocks go back) means
  its first occurrence: 02:30 on the autumn day is 02:30 CEST, once.

APScheduler's own CronTrigger with a time zone does neither: it answers 03:30
CEST for the skipped 02:30, and fires twice in the repeated hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

# How far back `due_before` looks for the latest due time, widening step by step.
LOOKBACK = (timedelta(hours=2), timedelta(days=2), timedelta(days=40), timedelta(days=400))


def parse_zone(name: str) -> ZoneInfo:
    """The zone, or ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC") from None


def parse_cron(expression: str) -> CronTrigger:
    """A 5-field cron expression as a trigger over naive wall time, or ValueError."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"bad cron expression {expression!r}: use 5 fields, e.g. '30 2 * * *'")
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=UTC)
    except ValueError as exc:
        raise ValueError(f"bad cron expression {expression!r}: {exc}") from None


def wall_to_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a naive local wall time (gaps: the next instant; folds: the first)."""
    first = wall.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # In a gap: the earliest instant whose wall time is at or past `wall`.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = instant
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def fire_times(trigger: CronTrigger, zone: ZoneInfo, start: datetime) -> Iterator[datetime]:
    """The due instants at or after `start` (UTC), in order, each once.

    The trigger walks naive wall time (carried as if it were UTC); each wall time
    is then placed in `zone`.
    """
    # A gap moves an instant later than its wall time suggests: start the walk a little early.
    wall = start.astimezone(zone).replace(tzinfo=UTC) - timedelta(hours=3)
    fire = trigger.get_next_fire_time(None, wall)
    last: datetime | None = None
    while fire is not None:
        instant = wall_to_instant(fire.replace(tzinfo=None), zone)
        if instant >= start and (last is None or instant > last):
            last = instant
            yield instant
        fire = trigger.get_next_fire_time(fire, fire)


def due_before(expression: str, zone_name: str, moment: datetime) -> tuple[datetime | None, datetime | None]:
    """(the latest due instant at or before `moment`, the one before it)."""
    trigger, zone = parse_cron(expression), parse_zone(zone_name)
    for back in LOOKBACK:
        found: list[datetime] = []
        for instant in fire_times(trigger, zone, moment - back):
            if instant > moment:
                break
            found = [*found[-1:], instant]
        if len(found) == 2 or (found and back == LOOKBACK[-1]):
            return found[-1], found[0] if len(found) == 2 else None
    return None, None
