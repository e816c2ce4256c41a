"""Calling windows in the callee's local time, with a controlled clock: presets, task hours, margins,
restricted dates, DST changes and numbers spanning several zones (US, RU, AU, BR, MX)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from outcall.errors import Unprocessable
from outcall.models import TaskSettings, WindowPolicy
from outcall.windows import Rules, check_policy, next_open_at, number_facts, verdict

NEW_YORK = "+12125550100"
RU_MOBILE = "+79161234567"  # +7 9xx: every Russian zone, Kaliningrad to Anadyr
AU_MOBILE = "+61412345678"  # 04xx: every Australian zone, Perth to Lord Howe, Christmas and Cocos islands
SAO_PAULO = "+5511987654321"
MEXICO_CITY = "+525512345678"
BEIJING = "+8613800138000"
PARIS = "+33142685300"


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def rules(margin: int = 10, zone: str = "Asia/Shanghai", **policy: object) -> Rules:
    return Rules.of(WindowPolicy.model_validate({"marginMinutes": margin, **policy}), zone)


def test_us_preset_is_8_to_21_at_the_callee_with_the_margin_before_closing() -> None:
    # 2027-01-05 is a Tuesday; New York is UTC-5 in January
    assert verdict(NEW_YORK, at(2027, 1, 5, 12, 59), rules()).open is False
    opened = verdict(NEW_YORK, at(2027, 1, 5, 13, 0), rules())
    assert opened.open and opened.region == "US" and opened.hours == "preset US"
    assert opened.open_until == at(2027, 1, 6, 1, 50)  # 21:00 local less 10 minutes
    late = verdict(NEW_YORK, at(2027, 1, 6, 1, 51), rules())
    assert late.open is False and late.next_open == at(2027, 1, 6, 13, 0)
    assert verdict(NEW_YORK, at(2027, 1, 6, 1, 51), rules(margin=0)).open is True


def test_a_dst_change_moves_the_window_in_utc() -> None:
    # the US springs forward on Sunday 2027-03-14: 08:00 local is 13:00 UTC the day before, 12:00 UTC that day
    assert next_open_at(NEW_YORK, at(2027, 3, 13, 3, 0), rules()) == at(2027, 3, 13, 13, 0)
    assert next_open_at(NEW_YORK, at(2027, 3, 14, 3, 0), rules()) == at(2027, 3, 14, 12, 0)
    # and falls back on Sunday 2027-11-07
    assert next_open_at(NEW_YORK, at(2027, 11, 6, 3, 0), rules()) == at(2027, 11, 6, 12, 0)
    assert next_open_at(NEW_YORK, at(2027, 11, 7, 3, 0), rules()) == at(2027, 11, 7, 13, 0)


def test_a_number_of_several_zones_is_callable_only_while_all_are_open() -> None:
    region, zones = number_facts(RU_MOBILE)
    assert region == "RU" and {"Europe/Moscow", "Asia/Anadyr", "Europe/Bucharest"} <= set(zones)
    # default hours 09:00-20:00: opens when the westernmost zone reaches 09:00, closes when Anadyr reaches 20:00
    winter = verdict(RU_MOBILE, at(2027, 1, 5, 6, 59), rules())
    assert winter.open is False and winter.next_open == at(2027, 1, 5, 7, 0)  # Bucharest UTC+2
    assert verdict(RU_MOBILE, at(2027, 1, 5, 7, 49), rules()).open_until == at(2027, 1, 5, 7, 50)
    assert verdict(RU_MOBILE, at(2027, 1, 5, 7, 50), rules()).open is False
    assert verdict(RU_MOBILE, at(2027, 1, 5, 7, 51), rules()).open is False
    # Bucharest's summer time (UTC+3) opens the shared window an hour earlier
    assert next_open_at(RU_MOBILE, at(2027, 7, 6, 3, 0), rules()) == at(2027, 7, 6, 6, 0)


def test_australian_mobiles_use_the_au_preset_in_every_zone_and_no_sunday() -> None:
    region, zones = number_facts(AU_MOBILE)
    assert region == "AU" and {"Australia/Perth", "Australia/Lord_Howe", "Indian/Cocos"} <= set(zones)
    # Sunday 2026-12-06 is closed; Monday opens at 09:00 on the Cocos Islands (UTC+6:30) = 02:30 UTC
    sunday = verdict(AU_MOBILE, at(2026, 12, 6, 3, 0), rules())
    assert sunday.open is False and sunday.next_open == at(2026, 12, 7, 2, 30)
    # and closes at 20:00 on Lord Howe: UTC+11 in its summer, UTC+10:30 in its winter
    assert verdict(AU_MOBILE, at(2026, 12, 7, 3, 0), rules()).open_until == at(2026, 12, 7, 8, 50)
    assert verdict(AU_MOBILE, at(2027, 7, 5, 3, 0), rules()).open_until == at(2027, 7, 5, 9, 20)


def test_regions_without_a_preset_use_the_task_hours_else_9_to_20() -> None:
    # Sao Paulo UTC-3, Mexico City UTC-6, no DST in either
    assert next_open_at(SAO_PAULO, at(2027, 1, 5, 3, 0), rules()) == at(2027, 1, 5, 12, 0)
    assert next_open_at(MEXICO_CITY, at(2027, 1, 5, 3, 0), rules()) == at(2027, 1, 5, 15, 0)
    narrow = rules(hours=[{"days": [1, 2, 3, 4, 5], "start": "10:00", "end": "12:00"}])
    assert verdict(MEXICO_CITY, at(2027, 1, 5, 16, 0), narrow).open is True
    assert verdict(MEXICO_CITY, at(2027, 1, 5, 17, 55), narrow).open is False
    assert next_open_at(MEXICO_CITY, at(2027, 1, 8, 19, 0), narrow) == at(2027, 1, 11, 16, 0)  # Fri -> Mon


def test_task_hours_narrow_a_preset_and_restricted_dates_close_whole_local_days() -> None:
    narrow = rules(hours=[{"start": "10:00", "end": "12:00"}])
    found = verdict(BEIJING, at(2027, 1, 5, 2, 0), narrow)
    assert found.open and found.hours == "preset CN and task hours" and found.open_until == at(2027, 1, 5, 3, 50)
    holiday = rules(restrictedDates=["2027-01-05"])
    assert verdict(BEIJING, at(2027, 1, 5, 2, 0), holiday).open is False
    assert next_open_at(BEIJING, at(2027, 1, 5, 2, 0), holiday) == at(2027, 1, 6, 0, 0)  # 08:00 Beijing


def test_split_hours_close_in_between() -> None:
    # FR: 10:00-13:00 and 14:00-20:00 on weekdays; Paris is UTC+1 in January
    assert verdict(PARIS, at(2027, 1, 5, 12, 0), rules(margin=0)).open is False
    assert next_open_at(PARIS, at(2027, 1, 5, 12, 0), rules()) == at(2027, 1, 5, 13, 0)


def test_a_number_without_a_zone_uses_the_task_default_zone() -> None:
    assert number_facts("+80012345678")[1] == ()
    found = verdict("+80012345678", at(2027, 1, 5, 2, 0), rules(zone="Europe/Berlin"))
    assert found.zones == ["Europe/Berlin"] and found.open is False and found.next_open == at(2027, 1, 5, 8, 0)


def test_a_task_may_narrow_a_preset_but_a_widening_is_a_422_naming_the_field() -> None:
    check_policy(WindowPolicy.model_validate({"regions": {"US": [{"start": "09:00", "end": "20:00"}]}}))
    wide = WindowPolicy.model_validate(
        {"regions": {"us": [{"start": "09:00", "end": "20:00"}, {"start": "07:30", "end": "12:00"}]}}
    )
    with pytest.raises(Unprocessable) as caught:
        check_policy(wide)
    assert caught.value.details[0]["field"] == "settings.compliance.window.regions.US[1]"
    assert "47 CFR 64.1200(c)(1)" in caught.value.message
    sunday = WindowPolicy.model_validate({"regions": {"AU": [{"days": [7], "start": "10:00", "end": "12:00"}]}})
    with pytest.raises(Unprocessable):
        check_policy(sunday)


def test_hours_are_checked_when_settings_are_read() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        TaskSettings.model_validate({"compliance": {"window": {"hours": [{"start": "21:00", "end": "08:00"}]}}})
    with pytest.raises(ValueError, match="ISO 3166"):
        TaskSettings.model_validate({"compliance": {"window": {"regions": {"USA": []}}}})
    settings = TaskSettings.model_validate({"compliance": {"window": {"restrictedDates": ["2027-01-01"]}}})
    assert settings.compliance is not None and settings.compliance.window.restricted_dates == [date(2027, 1, 1)]
