"""Request models: aliases, timestamps, counters, JSON fields, error shape."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from console.domain.validation import CommitAssociation, RunCreate, RunUpdate, error_details, normalise_status

BASE = {"event_id": "e", "run_id": "r", "agent_name": "a", "job_type": "j", "start_time": "2026-01-12T10:30:00Z"}


@pytest.mark.parametrize(("alias", "canon"), [("failed", "failure"), ("completed", "success"),
                                              ("succeeded", "success"), ("canceled", "cancelled"),
                                              (" Running ", "running")])
def test_aliases(alias, canon):
    assert normalise_status(alias) == canon
    assert RunCreate.model_validate({**BASE, "status": alias}).status == canon
    assert RunUpdate.model_validate({"status": alias}).status == canon


def test_timestamps_need_a_zone_in_bodies():
    with pytest.raises(ValidationError):
        RunCreate.model_validate({**BASE, "start_time": "2026-01-12T10:30:00"})
    record = RunCreate.model_validate({**BASE, "start_time": "2026-01-12T10:30:00+02:00"})
    assert record.start_time.isoformat() == "2026-01-12T08:30:00+00:00"


def test_counters_are_non_negative_and_null_duration_is_zero():
    with pytest.raises(ValidationError):
        RunCreate.model_validate({**BASE, "items_skipped": -1})
    assert RunCreate.model_validate({**BASE, "duration_ms": None}).duration_ms == 0


def test_error_details_have_exactly_loc_msg_type_and_no_input():
    secret = "s3cr3t-" * 10
    with pytest.raises(ValidationError) as caught:
        RunCreate.model_validate({**BASE, "status": secret})
    details = error_details(caught.value)
    assert details[0]["loc"] == ["body", "status"]
    assert all(set(item) == {"loc", "msg", "type"} for item in details)
    assert secret not in str(details)


def test_commit_hash_length_is_7_to_40_any_characters():
    assert CommitAssociation.model_validate({"commit_hash": "v1.2.3-x", "commit_source": "manual"})
    for bad in ("abcdef", "a" * 41):
        with pytest.raises(ValidationError):
            CommitAssociation.model_validate({"commit_hash": bad, "commit_source": "manual"})


@pytest.mark.parametrize("moment", ["0999-12-31T23:00:00Z", "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"])
def test_times_that_cannot_be_stored_in_the_fixed_form_are_refused(moment):
    with pytest.raises(ValidationError):
        RunCreate.model_validate({**BASE, "start_time": moment})


@pytest.mark.parametrize("text", [
    "2026-01-12T10:30:00Z", "2026-01-12T10:30:00.123456+00:00", "2026-01-12T02:30:00-08:00",
    "2026-01-12T10:30:00+0530", "2026-01-12 10:30:00Z", " 2026-01-12T10:30:00z ",
])
def test_a_zoned_timestamp_in_any_iso_form_is_the_same_utc_instant(text):
    from console.core.timeutil import parse_timestamp

    parsed = RunCreate.model_validate({**BASE, "start_time": text}).start_time
    assert parsed == parse_timestamp(text) and parsed.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("text", ["2026-01-12T10:30:00", "2026-01-12", "0999-12-31T23:00:00Z",
                                  "9999-12-31T23:00:00Z", "0001-01-01T00:00:00+01:00", "soon"])
def test_a_timestamp_without_zone_or_out_of_range_is_refused(text):
    with pytest.raises(ValidationError):
        RunCreate.model_validate({**BASE, "start_time": text})
