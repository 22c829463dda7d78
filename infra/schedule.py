"""Schedules of the stack config (backups, restore drills): five-field cron expressions in UTC,
parsed once (croniter expands them) and rendered two ways — a crontab line where no systemd runs
(the one-box) and a systemd timer's `OnCalendar=` everywhere else — so both fire at the same
minutes.

Refused, because cron and systemd would read them differently or systemd cannot say them: both
day of month and day of week restricted (cron fires on either, systemd on both), the `L`, `W`, `#`
and `H` extensions, and a sixth (seconds) field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

from croniter import CroniterError, croniter

# cron counts weekdays from Sunday (0); systemd names them.
WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
# Gaps are measured over eight years from a leap year: every month length and weekday pattern,
# and a 29 February schedule's four-year gap, occur in it.
_GAP_FROM = date(2024, 1, 1)
_GAP_DAYS = 8 * 366


@dataclass(frozen=True)
class Schedule:
    """A cron schedule, expanded: the values each field allows (all of its range for `*`)."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday

    def crontab(self) -> str:
        """The five cron fields (numbers and lists only: every cron reads them alike)."""
        return " ".join(_cron_field(values, low, high) for values, (low, high) in zip(self._fields, _RANGES))

    def on_calendar(self) -> str:
        """The systemd `OnCalendar=` value firing at the same minutes, in UTC."""
        weekdays = "" if len(self.weekdays) == 7 else ",".join(WEEKDAYS[d] for d in self.weekdays) + " "
        months = _calendar_field(self.months, 1, 12)
        days = _calendar_field(self.days, 1, 31)
        hours = _calendar_field(self.hours, 0, 23, width=2)
        minutes = _calendar_field(self.minutes, 0, 59, width=2)
        return f"{weekdays}*-{months}-{days} {hours}:{minutes}:00 UTC"

    def fires_on(self, day: date) -> bool:
        return (day.month in self.months and day.day in self.days
                and (day.isoweekday() % 7) in self.weekdays)

    @property
    def _fields(self) -> tuple[tuple[int, ...], ...]:
        return self.minutes, self.hours, self.days, self.months, self.weekdays


def parse(expression: str) -> Schedule:
    """A five-field cron expression (UTC); ValueError with one line saying what is wrong."""
    if len(expression.split()) != 5:
        raise ValueError(f"{expression!r} is not a 5-field cron schedule (minute hour day month weekday)")
    try:
        fields, nth_weekday = croniter.expand(expression)
    except CroniterError as exc:
        reason = str(exc).splitlines()[0].replace(f"[{expression}] is not acceptable, ", "")
        raise ValueError(f"{expression!r} is not a cron schedule: {reason}") from None
    if nth_weekday or any(value == "l" for values in fields for value in values):
        raise ValueError(f"{expression!r}: the L and # extensions have no systemd timer equivalent")
    expanded = [tuple(range(low, high + 1)) if values == ["*"] else tuple(sorted(set(values)))
                for values, (low, high) in zip(fields, _RANGES)]
    if len(expanded[2]) < 31 and len(expanded[4]) < 7:
        raise ValueError(f"{expression!r} restricts both day of month and day of week "
                         "(cron fires on either, a systemd timer on both): restrict one")
    return Schedule(*expanded)


def longest_gap_h(*schedules: Schedule) -> float:
    """The longest time between two runs of any of `schedules` (hours; infinite if they fire less
    than twice in eight years)."""
    return _longest_gap_h(tuple(sorted(set(schedules), key=repr)))


@cache
def _longest_gap_h(schedules: tuple[Schedule, ...]) -> float:
    longest, previous_last, runs = 0, None, 0  # minutes
    for offset in range(_GAP_DAYS):
        day = _GAP_FROM + timedelta(days=offset)
        times = _minutes_of_day(tuple(s for s in schedules if s.fires_on(day)))
        if not times:
            continue
        start = offset * 1440
        if previous_last is not None:
            longest = max(longest, start + times[0] - previous_last)
        longest = max(longest, _largest_step(times))
        previous_last = start + times[-1]
        runs += len(times)
    return float("inf") if runs < 2 else longest / 60


@cache
def _minutes_of_day(schedules: tuple[Schedule, ...]) -> tuple[int, ...]:
    return tuple(sorted({h * 60 + m for s in schedules for h in s.hours for m in s.minutes}))


@cache
def _largest_step(times: tuple[int, ...]) -> int:
    return max((b - a for a, b in zip(times, times[1:])), default=0)


def _cron_field(values: tuple[int, ...], low: int, high: int) -> str:
    return "*" if values == tuple(range(low, high + 1)) else ",".join(map(str, values))


def _calendar_field(values: tuple[int, ...], low: int, high: int, width: int = 1) -> str:
    if values == tuple(range(low, high + 1)):
        return "*"
    return ",".join(f"{v:0{width}d}" for v in values)
