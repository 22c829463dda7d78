"""Backup and restore-drill schedules of the stack config: a cron expression rendered for cron and
as a systemd timer fires at the same minutes (systemd's own calendar parser, `systemd-analyze
calendar`, against croniter), bad values are one line naming the key, and a paging limit below
the schedule's own gap is refused."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from croniter import croniter

from infra import schedule
from infra.config import ConfigError, parse_stack_config

ROOT = Path(__file__).resolve().parent.parent
BASE = datetime(2026, 2, 26, 22, 7, tzinfo=UTC)  # near a month's end, before a weekend


def _systemd_elapses(on_calendar: str, count: int) -> list[datetime]:
    done = subprocess.run(["systemd-analyze", "calendar", f"--iterations={count}",
                           f"--base-time={BASE:%Y-%m-%d %H:%M:%S} UTC", on_calendar],
                          capture_output=True, text=True, check=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", done.stdout)
    return [datetime.fromisoformat(f).replace(tzinfo=UTC) for f in found]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("expression", [
    "30 3 * * 0", "30 3 * * 1-6", "30 5 * * *", "*/20 1-3 * * mon-fri", "0 4 1,15 * *",
    "5 0 * 2,8 *", "0 23 * * 7", "59 12 31 * *",
])
def test_the_timer_fires_when_cron_would(expression):
    parsed = schedule.parse(expression)
    count = 12

    def cron(text: str) -> list[datetime]:
        found = croniter(text, BASE)
        return [found.get_next(datetime) for _ in range(count)]

    assert cron(parsed.crontab()) == cron(expression)  # the rendered crontab line: the same minutes
    assert _systemd_elapses(parsed.on_calendar(), count) == cron(expression)


def _onebox(**backups) -> dict:
    document = copy.deepcopy(yaml.safe_load((ROOT / "Pulumi.onebox.yaml").read_text()))
    document["config"]["photostack:backups"] = backups
    return document


@pytest.mark.parametrize("backups,key,reason", [
    ({"fullSchedule": "61 3 * * 0"}, "photostack:backups.fullSchedule", "out of range"),
    ({"diffSchedule": "30 3 * *"}, "photostack:backups.diffSchedule", "5-field"),
    ({"drillSchedule": "0 3 1 * 1"}, "photostack:backups.drillSchedule", "restrict one"),
    ({"drillSchedule": "0 3 L * *"}, "photostack:backups.drillSchedule", "no systemd timer equivalent"),
    ({"staleAfterH": 24}, "photostack:backups", "staleAfterH (24) must exceed the longest gap between scheduled backups (24 h"),
    ({"diffSchedule": "30 3 * * 3", "staleAfterH": 80}, "photostack:backups", "(96 h"),
    ({"drillSchedule": "0 6 * * 1", "drillStaleAfterH": 100}, "photostack:backups", "drillStaleAfterH (100) must exceed"),
])
def test_bad_schedule_is_one_line_naming_the_key(backups, key, reason):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(_onebox(**backups))
    (line,) = caught.value.problems
    assert line.startswith(key + ":") and reason in line


def test_longest_gap_spans_schedules_and_month_ends():
    weekly, daily_but_sunday = schedule.parse("30 3 * * 0"), schedule.parse("30 3 * * 1-6")
    assert schedule.longest_gap_h(weekly) == 168
    assert schedule.longest_gap_h(daily_but_sunday) == 48  # Saturday to Monday
    assert schedule.longest_gap_h(weekly, daily_but_sunday) == 24
    assert schedule.longest_gap_h(schedule.parse("0 4 1,15 * *")) == 17 * 24  # 15 Jan → 1 Feb
    assert schedule.longest_gap_h(schedule.parse("0 0 29 2 *")) == (4 * 365 + 1) * 24
    assert schedule.longest_gap_h(schedule.parse("0,30 * * * *")) == 0.5


def test_defaults_and_their_gaps():
    backups = parse_stack_config(_onebox()).backups
    assert (backups.backup_gap_h, backups.drill_gap_h) == (24, 24)
    assert backups.stale_after_h > backups.backup_gap_h and backups.drill_stale_after_h > backups.drill_gap_h
