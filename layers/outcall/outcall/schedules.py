"""The one place that talks to EventBridge Scheduler: one-time `at()` schedules for a task's
auto start and auto stop (TaskSchedules), and for a meeting's pre-meeting dialing
(ConferenceSchedules, below).

A schedule's name is deterministic per task and action (`task-<taskId>-<action>`), so creating
it again moves it, and removing it needs nothing but the task id. Each fires once (`at()` in
UTC, no flexible window), is deleted by Scheduler after it ran, and invokes task_control with
`{"kind": "task-auto", "taskId", "action", "version"}`; failed deliveries go to the scheduler
DLQ."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from outcall.config import Config
from outcall.observability import logger

TASK_AUTO_KIND = "task-auto"


def schedule_name(task_id: str, action: str) -> str:
    return f"task-{task_id}-{action}"[:64]


def at_expression(when: datetime) -> str:
    return f"at({when.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})"


class OneTimeSchedules:
    """One-time `at()` schedules in the stack's group, targeting one function: create (or move
    when the name exists) and remove. FlexibleTimeWindow OFF, deleted by Scheduler after it ran,
    failed deliveries dead-lettered to the scheduler DLQ."""

    target_field = ""  # the Config field that holds the target function's ARN
    retry_policy: dict[str, int] | None = None

    def __init__(self, client: Any = None, config: Config | None = None) -> None:
        self._client = client
        self.config = config or Config.from_env()
        self.target_arn = self.config.need(self.target_field)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client("scheduler")
        return self._client

    def _put(self, name: str, when: datetime, payload: dict[str, Any]) -> str:
        """Create or move the schedule `name`; returns its at() expression."""
        target: dict[str, Any] = {
            "Arn": self.target_arn,
            "RoleArn": self.config.need("scheduler_role_arn"),
            "Input": json.dumps(payload),
        }
        if self.retry_policy:
            target["RetryPolicy"] = dict(self.retry_policy)
        if self.config.scheduler_dlq_arn:
            target["DeadLetterConfig"] = {"Arn": self.config.scheduler_dlq_arn}
        kwargs: dict[str, Any] = {
            "Name": name,
            "GroupName": self.config.scheduler_group,
            "ScheduleExpression": at_expression(when),
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "ActionAfterCompletion": "DELETE",
            "Target": target,
            "State": "ENABLED",
        }
        try:
            self.client.create_schedule(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise
            self.client.update_schedule(**kwargs)
        logger.info("schedule set", extra={"schedule": name, "at": kwargs["ScheduleExpression"]})
        return str(kwargs["ScheduleExpression"])

    def _remove(self, name: str) -> bool:
        """Remove the schedule; False when there was none (already fired, or never set)."""
        try:
            self.client.delete_schedule(Name=name, GroupName=self.config.scheduler_group)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return False
            raise
        logger.info("schedule removed", extra={"schedule": name})
        return True


class TaskSchedules(OneTimeSchedules):
    """Auto start / auto stop schedules of tasks."""

    target_field = "task_control_function_arn"

    def put(self, task_id: str, action: str, when: datetime, version: int) -> str:
        """Create the schedule, or move it when it exists."""
        name = schedule_name(task_id, action)
        payload = {"kind": TASK_AUTO_KIND, "taskId": task_id, "action": action, "version": version}
        self._put(name, when, payload)
        return name

    def remove(self, task_id: str, action: str) -> bool:
        return self._remove(schedule_name(task_id, action))


# ---------------------------------------------------------------- conference pre-meeting dialing

CONFERENCE_DIAL_KIND = "conference-dial"
CONFERENCE_RETRY_POLICY = {"MaximumRetryAttempts": 5, "MaximumEventAgeInSeconds": 3600}


def conference_schedule_name(event_id: str, due_at: datetime) -> str:
    """Deterministic per meeting and due time: `conf-<eventId>-<YYYYMMDDTHHMMSSZ>`."""
    return f"conf-{event_id}-{due_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"[:64]


class ConferenceSchedules(OneTimeSchedules):
    """One one-time schedule per meeting and due time, targeting conference_dialing with
    `{"kind": "conference-dial", "eventId", "revision", "dueAt"}`; callees with the same due time
    share it. Scheduler retries a failed delivery (CONFERENCE_RETRY_POLICY), then dead-letters."""

    target_field = "conference_dialing_function_arn"
    retry_policy = CONFERENCE_RETRY_POLICY

    def put(self, event_id: str, due_at: datetime, revision: int) -> tuple[str, str]:
        """Create the schedule of this due time (or move it to `revision`); (name, expression)."""
        name = conference_schedule_name(event_id, due_at)
        payload = {
            "kind": CONFERENCE_DIAL_KIND,
            "eventId": event_id,
            "revision": revision,
            "dueAt": due_at.astimezone(UTC).isoformat(),
        }
        return name, self._put(name, due_at, payload)

    def remove(self, event_id: str, due_at: datetime) -> bool:
        return self._remove(conference_schedule_name(event_id, due_at))
