"""Deadlines: arrival in Asia/Tokyo, calendar and business days, Golden Week, year-end closure."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from dsrflow.workflow.calendar import BusinessCalendar
from dsrflow.workflow.definitions import DeadlineDef

TOKYO = ZoneInfo("Asia/Tokyo")
CAL = BusinessCalendar(TOKYO, ["12-29..12-31", "01-01..01-03"])


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)  # type: ignore[misc]


def test_fourteen_calendar_days_end_at_midnight_tokyo() -> None:
    due = CAL.due_at(jst(2026, 4, 1, 10, 0), DeadlineDef(days=14))
    assert due == jst(2026, 4, 15, 23, 59, 59)
    assert due.astimezone(UTC) == datetime(2026, 4, 15, 14, 59, 59, tzinfo=UTC)


def test_art39_allows_a_suit_from_the_sixteenth_for_arrival_on_the_first() -> None:
    # The reference's own example: a request reaching the business on 4/1 allows a suit on 4/16.
    assert CAL.art39_date(jst(2026, 4, 1, 9, 0)) == date(2026, 4, 16)


@pytest.mark.parametrize(
    ("arrival_utc", "local_day"),
    [
        (datetime(2026, 3, 31, 14, 30, tzinfo=UTC), date(2026, 3, 31)),  # 23:30 JST
        (datetime(2026, 3, 31, 15, 30, tzinfo=UTC), date(2026, 4, 1)),  # 00:30 JST next day
    ],
)
def test_the_day_of_arrival_is_the_tokyo_day(arrival_utc: datetime, local_day: date) -> None:
    due = CAL.due_at(arrival_utc, DeadlineDef(days=14))
    assert due.date() == date.fromordinal(local_day.toordinal() + 14)


def test_golden_week_is_skipped_in_business_days() -> None:
    # 2026: 4/29 Showa Day, 5/3 Constitution Day (Sunday), 5/4, 5/5, 5/6 substitute holiday.
    for holiday in (date(2026, 4, 29), date(2026, 5, 4), date(2026, 5, 5), date(2026, 5, 6)):
        assert not CAL.is_business_day(holiday)
    due = CAL.due_at(jst(2026, 4, 28, 17, 0), DeadlineDef(days=5, counting="business"))
    # 4/30, 5/1, 5/7, 5/8, 5/11
    assert due.date() == date(2026, 5, 11)


def test_calendar_counting_does_not_skip_golden_week() -> None:
    due = CAL.due_at(jst(2026, 4, 28, 17, 0), DeadlineDef(days=5, counting="calendar"))
    assert due.date() == date(2026, 5, 3)


def test_year_end_closure_is_skipped_in_business_days() -> None:
    # 12/28 (Mon) counts; 12/29-1/3 are closed (1/1 is also a holiday); then 1/4, 1/5, 1/6, 1/7.
    due = CAL.due_at(jst(2026, 12, 25, 12, 0), DeadlineDef(days=5, counting="business"))
    assert due.date() == date(2027, 1, 7)
    assert CAL.is_closure(date(2026, 12, 30))
    assert not CAL.is_closure(date(2026, 12, 28))


def test_closure_days_are_configurable() -> None:
    obon = BusinessCalendar(TOKYO, ["08-13..08-16"])
    assert not obon.is_business_day(date(2026, 8, 14))
    assert obon.is_business_day(date(2026, 12, 29))  # no year-end closure configured


def test_bad_closure_day_is_refused() -> None:
    with pytest.raises(ValueError, match="13-40"):
        BusinessCalendar(TOKYO, ["13-40"])
