"""The local stack's reading of template.yaml: intrinsics, routes and schedule expressions."""

from __future__ import annotations

from datetime import UTC, datetime

from local.pumps import S3Pump, SchedulerPump
from local.template import Route, Stack


def test_intrinsics_resolve_to_local_names() -> None:
    stack = Stack(endpoint="http://127.0.0.1:4566")
    env = stack.environment()
    assert env["TABLE_NAME"] == "outcall-Table"
    assert env["BUCKET_NAME"] == "outcall-call-lists-123456789012"
    assert env["IMPORT_QUEUE_URL"] == "http://127.0.0.1:4566/123456789012/outcall-ImportQueue"
    assert env["TASK_CONTROL_FUNCTION_ARN"].endswith(":function:outcall-task-control")
    assert env["SCHEDULER_ROLE_ARN"] == "arn:aws:iam::123456789012:role/outcall-SchedulerRole"


def test_route_matching_prefers_literal_segments_and_extracts_parameters() -> None:
    route = Route("GET", "/tasks/{taskId}/calls", True)
    match = route.pattern.match("/tasks/abc/calls")
    assert match and match.groups() == ("abc",)
    assert route.pattern.match("/tasks/abc") is None
    assert Route("GET", "/tasks/{taskId}", True).specificity > Route("GET", "/tasks/{taskId}/calls", True).specificity


def test_schedule_expressions() -> None:
    at = SchedulerPump.at_time("at(2026-11-21T09:30:00)", None)
    assert at == datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    shanghai = SchedulerPump.at_time("at(2026-11-21T17:30:00)", "Asia/Shanghai")
    assert shanghai is not None and shanghai.astimezone(UTC) == at
    assert SchedulerPump.at_time("rate(1 minute)", None) is None
    assert SchedulerPump.rate_seconds("rate(5 minutes)") == 300
    assert SchedulerPump.rate_seconds("rate(1 hour)") == 3600
    assert SchedulerPump.rate_seconds("cron(0 9 * * ? *)") is None


def test_s3_trigger_filters_by_bucket_event_prefix_and_suffix() -> None:
    src = {"bucket": "b", "events": ["s3:ObjectCreated:*"], "prefix": "imports/", "suffix": ""}
    assert S3Pump.matches(src, "b", "ObjectCreated:Put", "imports/t/list.csv")
    assert not S3Pump.matches(src, "b", "ObjectCreated:Put", "reports/x.csv")
    assert not S3Pump.matches(src, "other", "ObjectCreated:Put", "imports/t/list.csv")
    assert not S3Pump.matches(src, "b", "ObjectRemoved:Delete", "imports/t/list.csv")
