"""The scheduler pump against moto's EventBridge Scheduler, with the clock under test control."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from local import pumps
from local.runtime import Runtime
from local.template import Stack


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def pump(aws: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    session = boto3.Session(region_name="us-east-1")
    aws.create_schedules(session)
    runtime = Runtime(aws.functions())
    calls: list[tuple[str, Any]] = []

    def invoke(fn: Any, event: Any, trigger: str, detail: str = "") -> Any:
        calls.append((fn.name, event))
        if event.get("fail"):
            raise RuntimeError("target failed")
        return {}

    monkeypatch.setattr(runtime, "invoke", invoke)
    pump = pumps.SchedulerPump(runtime, session.client("scheduler"), session.client("sqs"), max_retries=1)
    pump.calls = calls  # type: ignore[attr-defined]
    return pump


def test_template_rate_schedule_fires_every_period_and_not_before(pump: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(1_000_000.0)
    monkeypatch.setattr(pumps.time, "time", clock.time)
    pump.tick()
    assert pump.calls == []  # registered now, first firing one period later
    clock.now += 59
    pump.tick()
    assert pump.calls == []
    clock.now += 1
    pump.tick()
    assert sorted(pump.calls) == [
        ("outcall-task-control", {"kind": "dispatch-running"}),
        ("outcall-webhook-intake", {"kind": "poll-results"}),
    ]
    pump.tick()
    assert len(pump.calls) == 2
    clock.now += 60
    pump.tick()
    assert len(pump.calls) == 4


def test_failed_one_time_schedule_is_retried_then_dead_lettered_and_deleted(pump: Any) -> None:
    scheduler = boto3.client("scheduler", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    dlq_url = sqs.get_queue_url(QueueName="outcall-SchedulerDLQ")["QueueUrl"]
    scheduler.create_schedule(
        Name="fails",
        GroupName="outcall-schedules",
        ScheduleExpression="at(2020-01-01T00:00:00)",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={
            "Arn": "arn:aws:lambda:us-east-1:123456789012:function:outcall-task-control",
            "RoleArn": "arn:aws:iam::123456789012:role/outcall-SchedulerRole",
            "Input": json.dumps({"fail": True}),
            "RetryPolicy": {"MaximumRetryAttempts": 5},
            "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:outcall-SchedulerDLQ"},
        },
    )
    pump.tick()
    assert [name for name, _ in pump.calls].count("outcall-task-control") == 2  # 1 + max_retries
    dead = sqs.receive_message(QueueUrl=dlq_url).get("Messages", [])
    assert [json.loads(m["Body"]) for m in dead] == [{"fail": True}]
    names = [s["Name"] for s in scheduler.list_schedules(GroupName="outcall-schedules")["Schedules"]]
    assert "fails" not in names
    pump.tick()
    assert [name for name, _ in pump.calls].count("outcall-task-control") == 2


def test_future_one_time_schedule_waits_and_a_moved_one_fires_at_its_new_time(pump: Any) -> None:
    scheduler = boto3.client("scheduler", region_name="us-east-1")
    target = {
        "Arn": "arn:aws:lambda:us-east-1:123456789012:function:outcall-conference-dialing",
        "RoleArn": "arn:aws:iam::123456789012:role/outcall-SchedulerRole",
        "Input": json.dumps({"eventId": "m1"}),
    }
    scheduler.create_schedule(
        Name="later",
        GroupName="outcall-schedules",
        ScheduleExpression="at(2099-01-01T00:00:00)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target=target,
    )
    pump.tick()
    assert not [c for c in pump.calls if c[0] == "outcall-conference-dialing"]
    scheduler.update_schedule(
        Name="later",
        GroupName="outcall-schedules",
        ScheduleExpression="at(2020-01-01T00:00:00)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target=target,
    )
    pump.tick()
    pump.tick()
    assert [c for c in pump.calls if c[0] == "outcall-conference-dialing"] == [
        ("outcall-conference-dialing", {"eventId": "m1"})
    ]


def test_the_pump_forgets_schedules_that_are_gone(pump: Any) -> None:
    scheduler = boto3.client("scheduler", region_name="us-east-1")
    target = {
        "Arn": "arn:aws:lambda:us-east-1:123456789012:function:outcall-conference-dialing",
        "RoleArn": "arn:aws:iam::123456789012:role/outcall-SchedulerRole",
        "Input": json.dumps({"eventId": "m2"}),
    }
    for n in range(5):
        scheduler.create_schedule(
            Name=f"done-{n}",
            GroupName="outcall-schedules",
            ScheduleExpression="at(2020-01-01T00:00:00)",
            FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Target=target,
        )
    pump.tick()  # fires and deletes them
    assert len([c for c in pump.calls if c[0] == "outcall-conference-dialing"]) == 5
    pump.tick()
    assert not [key for key in pump.fired if "/done-" in key]  # a long run keeps no trace of each
    pump.tick()
    assert len([c for c in pump.calls if c[0] == "outcall-conference-dialing"]) == 5
