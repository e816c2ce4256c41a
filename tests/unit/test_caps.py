"""Frequency caps: rolling windows over a number's attempt log, account caps a task may only narrow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from outcall.caps import account_caps, check_caps, judge, parse_caps, prune
from outcall.errors import Unprocessable
from outcall.models import CapRule

NOW = datetime(2027, 1, 5, 12, 0, tzinfo=UTC)


def ago(**delta: float) -> float:
    return (NOW - timedelta(**delta)).timestamp()


def test_caps_are_read_from_the_environment_with_defaults() -> None:
    assert [r.label() for r in account_caps({})] == ["3/24h", "10/720h"]
    assert [r.label() for r in account_caps({"COMPLIANCE_CAPS": "3/5h, 5/1d"})] == ["3/5h", "5/24h"]
    assert account_caps({"COMPLIANCE_CAPS": ""}) == []
    with pytest.raises(ValueError, match="not <attempts>"):
        parse_caps("3 per day")


def test_a_full_rolling_window_frees_when_its_oldest_attempt_ages_out() -> None:
    rules = parse_caps("3/24h,10/30d")
    log = {"a": ago(hours=23), "b": ago(hours=2), "c": ago(hours=1), "old": ago(hours=25)}
    found = judge(log, rules, NOW)
    assert found.allowed is False and found.counts == {"3/24h": 3, "10/720h": 4}
    assert found.frees_at == NOW + timedelta(hours=1, seconds=1)
    assert judge({"b": ago(hours=2), "c": ago(hours=1)}, rules, NOW).allowed is True


def test_the_longer_cap_binds_when_the_daily_one_has_room() -> None:
    rules = parse_caps("3/24h,10/30d")
    log = {str(i): ago(days=29 - i * 3) for i in range(10)}  # 10 attempts, the last 2 days ago
    found = judge(log, rules, NOW)
    assert found.allowed is False and found.counts["3/24h"] == 0
    assert found.frees_at == datetime.fromtimestamp(log["0"], UTC) + timedelta(days=30, seconds=1)


def test_a_task_may_narrow_the_account_caps_only() -> None:
    account = parse_caps("3/24h,10/30d")
    check_caps([CapRule(attempts=2, window_hours=24), CapRule(attempts=1, window_hours=4)], account)
    check_caps([CapRule(attempts=5, window_hours=48)], account)  # the account's 3/24h still applies
    with pytest.raises(Unprocessable) as caught:
        check_caps([CapRule(attempts=1, window_hours=1), CapRule(attempts=4, window_hours=12)], account)
    assert caught.value.details[0]["field"] == "settings.compliance.caps[1].attempts"


def test_the_log_keeps_31_days() -> None:
    log = {"new": ago(days=1), "old": ago(days=32)}
    assert prune(log, NOW) == {"new": log["new"]}
