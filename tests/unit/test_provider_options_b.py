"""settings.providerOptions for aliyun and xswitch: the providers' own field names, their documented
ranges and dependent fields, and the fields outcall owns refused, each a 422 naming the field."""

from __future__ import annotations

import pytest
from outcall.errors import Unprocessable
from outcall.tasks import validate_provider_options


def refused(provider: str, options: dict) -> str:
    with pytest.raises(Unprocessable) as info:
        validate_provider_options(provider, options)
    return str(info.value)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"EnterpriseId": 1}, "EnterpriseId"),
        ({"TaskId": 1}, "TaskId"),
        ({"Name": "x"}, "Name"),
        ({"Type": 2}, "Type"),
        ({"AutoDelete": 1}, "AutoDelete"),
        ({"ivrId": 3}, "ivrId"),  # the document's name is IvrId
        ({"CustomerClidsCategory": 3}, "CustomerClidsCategory"),
        ({"CustomerClidsCategory": 4}, "CustomerClidsGroup"),
        ({"CustomerClidsCategory": 5}, "CustomerClidsGroup"),
        ({"CallGroupType": 1}, "Cnos"),
        ({"CallGroupType": 2}, "AgentGroup"),
        ({"AutoTaskType": 1}, "AutoTriggerTimeStrategy"),
        ({"Quotiety": 0}, "Quotiety"),
        ({"Quotiety": 20.5}, "Quotiety"),
        ({"PredictAdjust": 40}, "PredictAdjust"),
        ({"CustomerTimeout": 61}, "CustomerTimeout"),
        ({"AgentTimeout": 4}, "AgentTimeout"),
        ({"Wrapup": 10801}, "Wrapup"),
        ({"MaxWaitTime": 9}, "MaxWaitTime"),
        ({"MinAvailableAgentCount": 11}, "MinAvailableAgentCount"),
        ({"AnswerRate": 0}, "AnswerRate"),
        ({"WarmUpDuration": 601}, "WarmUpDuration"),
        ({"RetryStrategyTimeType": 3}, "RetryStrategyTimeType"),
        ({"AutoStartDay": "2026/01/01"}, "AutoStartDay"),
        ({"CallVariables": [{"a": 1}] * 6}, "CallVariables"),
        (
            {"RetryStrategy": {"retry": 2, "strategy": [{"round": 1, "time": "0-2-0"}, {"round": 2, "time": "0-1-0"}]}},
            "RetryStrategy",
        ),
    ],
)
def test_aliyun_options_are_checked_against_the_document(options, field):
    message = refused("aliyun", options)
    assert f"settings.providerOptions.{field}:" in message and "(aliyun)" in message


def test_aliyun_documented_options_pass():
    validate_provider_options(
        "aliyun",
        {
            "IvrId": 42,
            "CustomerClidsCategory": 4,
            "CustomerClidsGroup": "pool",
            "CallGroupType": 1,
            "Cnos": "2000,2001",
            "Quotiety": 17.62,
            "RetryStrategyTimeType": 2,
            "RetryStrategy": '{"retry":2,"strategy":[{"round":1,"time":"0-2-0"},{"round":2,"time":"0-1-0"}]}',
            "AutoComplete": 0,
        },
    )


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"group_name": "x"}, "group_name"),
        ({"id": 2}, "id"),
        ({"maxConcurrency": 2}, "maxConcurrency"),
        ({"auto_dial": 2}, "auto_dial"),
        ({"calling_time": 0}, "calling_time"),
        ({"task_start_time": "tomorrow"}, "task_start_time"),
    ],
)
def test_xswitch_options_are_the_seed_task_fields(options, field):
    message = refused("xswitch", options)
    assert f"settings.providerOptions.{field}:" in message and "(xswitch)" in message


def test_xswitch_documented_options_pass():
    validate_provider_options(
        "xswitch",
        {"calling_time": 30, "max_caps": 1, "auto_record": 1, "dest_context": "context-1", "action": "playback"},
    )
