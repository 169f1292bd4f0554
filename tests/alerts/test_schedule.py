"""Due times of cron schedules in a time zone: the skipped and the repeated hour."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice

import pytest
from apscheduler.triggers.cron import CronTrigger

from console.alerts.schedule import due_before, fire_times, parse_cron, parse_zone


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_apscheduler_alone_gets_both_changes_wrong():
    """The reason for the wrapper: CronTrigger answers 03:30 CEST for the skipped 02:30, and fires twice
    in the repeated hour."""
    trigger = CronTrigger.from_crontab("30 2 * * *", timezone="Europe/Berlin")
    spring = trigger.get_next_fire_time(None, utc(2026, 3, 28, 12))
    assert spring.astimezone(UTC) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST, not 03:00
    first = trigger.get_next_fire_time(None, utc(2026, 10, 24, 12))
    second = trigger.get_next_fire_time(first, first)
    assert (first.astimezone(UTC), second.astimezone(UTC)) == (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30))


def test_a_skipped_local_time_means_the_next_instant_that_exists():
    times = list(islice(fire_times(parse_cron("30 2 * * *"), parse_zone("Europe/Berlin"), utc(2026, 3, 27)), 4))
    assert times == [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0),
                     utc(2026, 3, 30, 0, 30)]
    # Several wall times inside the gap are one instant, once.
    gap = list(islice(fire_times(parse_cron("0,20,40 2 * * *"), parse_zone("Europe/Berlin"), utc(2026, 3, 29)), 2))
    assert gap == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 0)]


def test_a_repeated_local_time_means_its_first_occurrence_once():
    times = list(islice(fire_times(parse_cron("30 2 * * *"), parse_zone("Europe/Berlin"), utc(2026, 10, 24)), 3))
    assert times == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # America/New_York too (clocks change at 02:00 there, on other dates).
    ny = list(islice(fire_times(parse_cron("30 1 * * *"), parse_zone("America/New_York"), utc(2026, 11, 1)), 2))
    assert ny == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_due_before_gives_the_latest_due_time_and_the_one_before():
    assert due_before("30 2 * * *", "Europe/Berlin", utc(2026, 3, 29, 1, 0)) == (
        utc(2026, 3, 29, 1, 0), utc(2026, 3, 28, 1, 30))
    assert due_before("*/5 * * * *", "UTC", utc(2026, 1, 1, 0, 7)) == (utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 0, 0))
    assert due_before("0 0 1 1 *", "UTC", utc(2026, 3, 1)) == (utc(2026, 1, 1), None)


@pytest.mark.parametrize("expression", ["", "* * * *", "61 * * * *", "* 25 * * *", "a b c d e", "* * * * * *"])
def test_bad_cron_expressions_are_refused(expression):
    with pytest.raises(ValueError, match="cron"):
        parse_cron(expression)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "Europe/Berlin\x00"])
def test_unknown_time_zones_are_refused(name):
    with pytest.raises(ValueError, match="time zone"):
        parse_zone(name)
