"""Deadlines: counted from arrival in the company's time zone, in calendar or business days.

Business days skip weekends, Japanese public holidays (from the ``holidays`` package, which
follows the Cabinet Office's list including substitute and citizens' holidays) and the company's
closure days (default 12/29-1/3, which are not public holidays).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from dsrflow.workflow.definitions import DeadlineDef

END_OF_DAY = time(23, 59, 59)
# The company's year-end closure (not public holidays); DSRFLOW_CLOSURE_DAYS replaces it.
DEFAULT_CLOSURE_DAYS = ("12-29..12-31", "01-01..01-03")
DEFAULT_TIMEZONE = "Asia/Tokyo"


def parse_closures(closure_days: list[str]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``["12-29..12-31", "01-01..01-03", "08-13"]`` -> month/day ranges (inclusive)."""
    ranges = []
    for item in closure_days:
        start, _, end = item.partition("..")
        try:
            first = tuple(int(part) for part in start.split("-"))
            last = tuple(int(part) for part in (end or start).split("-"))
            if len(first) != 2 or len(last) != 2:
                raise ValueError("not MM-DD")
            date(2024, first[0], first[1]), date(2024, last[0], last[1])  # a leap year
        except ValueError as exc:
            raise ValueError(
                f"closure day '{item}' must be MM-DD or MM-DD..MM-DD ({exc})"
            ) from None
        ranges.append(((first[0], first[1]), (last[0], last[1])))
    return ranges


@lru_cache(maxsize=64)
def _japanese_holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("JP", years=year)


class BusinessCalendar:
    """Which days count as business days for this company."""

    def __init__(self, tz: ZoneInfo, closure_days: list[str]):
        self.tz = tz
        self._closures = parse_closures(closure_days)

    def is_closure(self, day: date) -> bool:
        md = (day.month, day.day)
        return any(
            first <= md <= last if first <= last else (md >= first or md <= last)  # 12-29..01-03
            for first, last in self._closures
        )

    def is_business_day(self, day: date) -> bool:
        return (
            day.weekday() < 5
            and day not in _japanese_holidays(day.year)
            and not self.is_closure(day)
        )

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def add_days(self, start: date, days: int, counting: str) -> date:
        """The day ``days`` days after ``start`` (the start day itself is not counted)."""
        if counting == "calendar":
            return start + timedelta(days=days)
        day, counted = start, 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_business_day(day):
                counted += 1
        return day

    def end_of(self, day: date) -> datetime:
        """The last second of ``day`` in the company's zone, as an aware datetime."""
        return datetime.combine(day, END_OF_DAY, tzinfo=self.tz)

    def due_at(self, received_at: datetime, deadline: DeadlineDef, extra_days: int = 0) -> datetime:
        """End of the last day to answer: ``deadline.days`` after the day of arrival."""
        last_day = self.add_days(self.local_date(received_at), deadline.days, deadline.counting)
        if extra_days:
            last_day = self.add_days(last_day, extra_days, deadline.counting)
        return self.end_of(last_day)

    def art39_date(self, received_at: datetime) -> date:
        """First day the requester may sue under Art. 39: two weeks have passed since arrival.

        Arrival on 4/1 gives 4/16 (the day of arrival is not counted, Civil Code Art. 140).
        """
        return self.local_date(received_at) + timedelta(days=15)
