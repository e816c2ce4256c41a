"""The local stack over HTTP: every trigger kind of template.yaml is delivered to its function."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from outcall import imports

pytestmark = pytest.mark.slow


def test_health_and_swagger_are_public(local_stack: Any) -> None:
    assert local_stack.get("/health").json() == {"status": "ok"}
    swagger = local_stack.get("/swagger")
    assert swagger.status_code == 200 and "SwaggerUIBundle" in swagger.text
    doc = local_stack.get("/openapi.json").json()
    assert "/imports/{importId}" in doc["paths"]


def test_protected_route_needs_a_valid_token(local_stack: Any) -> None:
    missing = local_stack.get("/imports/imp_x")
    assert missing.status_code == 401
    assert missing.json()["code"] == "Unauthorized" and missing.json()["errors"] == []
    assert "Bearer" in missing.json()["message"] and missing.json()["requestId"]
    wrong = local_stack.get("/imports/imp_x", headers={"Authorization": "Bearer oc_not_a_real_token_000000"})
    assert wrong.status_code == 401
    # through the authorizer to the function, which answers in the API's error shape
    found = local_stack.authed("GET", "/imports/imp_x")
    assert found.status_code == 404
    assert found.json()["code"] == "NotFound" and found.json()["requestId"]
    authorizer_calls = local_stack.deliveries("authorizer")
    assert any(d["detail"] == "GET /imports/{importId}" and d["outcome"] == "ok" for d in authorizer_calls)


def test_unknown_route_is_404_from_the_gateway(local_stack: Any) -> None:
    answer = local_stack.get("/nope")
    assert answer.status_code == 404
    assert set(answer.json()) == {"code", "message", "requestId", "errors"}
    assert answer.json()["code"] == "NotFound" and "GET /nope" in answer.json()["message"]


def test_s3_upload_reaches_the_import_function(local_stack: Any) -> None:
    s3 = local_stack.client("s3")
    key = f"imports/task-{uuid.uuid4().hex[:6]}/list with spaces 名单.csv"
    put = s3.put_object(Bucket="outcall-call-lists-123456789012", Key=key, Body=b"name,mobile\n")
    import_id = imports.import_id_for("outcall-call-lists-123456789012", key, put.get("VersionId"))

    answer = local_stack.wait_for(
        lambda: (r := local_stack.authed("GET", f"/imports/{import_id}")).status_code == 200 and r
    )
    job = answer.json()
    assert job["objectKey"] == key
    # no such task: the planner fails the import with the reason
    failed = local_stack.wait_for(
        lambda: (j := local_stack.authed("GET", f"/imports/{import_id}").json())["status"] == "failed" and j
    )
    assert "no task" in failed["error"]
    local_stack.wait_for(lambda: key in [d["detail"] for d in local_stack.deliveries("s3")])
    time.sleep(1)
    assert [d["detail"] for d in local_stack.deliveries("s3")].count(key) == 1


def test_failing_sqs_message_is_redelivered_then_dead_lettered(local_stack: Any) -> None:
    sqs = local_stack.client("sqs")
    queue = sqs.get_queue_url(QueueName="outcall-ImportQueue")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName="outcall-ImportDLQ")["QueueUrl"]
    marker = f"imp_missing_{uuid.uuid4().hex[:8]}"
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"importId": marker, "step": "no-such-step"}))

    def dead_lettered() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        mine = [m for m in messages if marker in m["Body"]]
        for m in messages:
            if m not in mine:
                sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        return mine

    mine = local_stack.wait_for(dead_lettered, timeout=30)
    assert int(mine[0]["Attributes"]["ApproximateReceiveCount"]) >= 1
    failed_batches = [
        d
        for d in local_stack.deliveries("sqs", "outcall-contact-import")
        if d.get("batchItemFailures") and d["detail"] == "outcall-ImportQueue"
    ]
    assert len(failed_batches) >= 3  # maxReceiveCount of ImportQueue in template.yaml


def test_due_schedule_fires_once_and_is_deleted(local_stack: Any) -> None:
    from local.pumps import utc_in

    scheduler = local_stack.client("scheduler")
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    scheduler.create_schedule(
        Name=name,
        GroupName="outcall-schedules",
        ScheduleExpression=utc_in(2),
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={
            "Arn": "arn:aws:lambda:us-east-1:123456789012:function:outcall-conference-dialing",
            "RoleArn": "arn:aws:iam::123456789012:role/outcall-SchedulerRole",
            "Input": json.dumps(
                {"kind": "conference-dial", "eventId": name, "revision": 1, "dueAt": "2026-01-01T00:00:00Z"}
            ),
        },
    )
    assert not [d for d in local_stack.deliveries("schedule") if d["detail"] == name]
    local_stack.wait_for(lambda: [d for d in local_stack.deliveries("schedule") if d["detail"] == name], timeout=15)
    time.sleep(2)
    fired = [d for d in local_stack.deliveries("schedule") if d["detail"] == name]
    assert len(fired) == 1
    assert fired[0]["function"] == "outcall-conference-dialing" and fired[0]["outcome"] == "ok"
    names = [s["Name"] for s in scheduler.list_schedules(GroupName="outcall-schedules")["Schedules"]]
    assert name not in names


def test_template_rate_schedule_is_registered(local_stack: Any) -> None:
    scheduler = local_stack.client("scheduler")
    schedule = scheduler.get_schedule(Name="outcall-poll-results")
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["Target"]["Arn"].endswith(":function:outcall-webhook-intake")


def test_every_provider_simulator_is_served_and_reachable_with_the_stack_secret(local_stack: Any) -> None:
    from outcall.providers import get_provider
    from outcall.providers.base import TaskSpec

    secret = local_stack.client("secretsmanager").get_secret_value(SecretId="outcall/providers")
    settings = json.loads(secret["SecretString"])
    assert set(settings) == {"quanshi", "xswitch", "aliyun", "nxcloud", "airudder"}
    for entry in settings.values():
        assert entry["baseUrl"].startswith("http://127.0.0.1:")
    xswitch = get_provider("xswitch", settings)
    task_id = xswitch.create_task(TaskSpec(name="e2e"))
    assert task_id
    nxcloud = get_provider("nxcloud", settings)
    assert nxcloud.create_task(TaskSpec(name="e2e", type="robot"))
    for key in ("nxcloud", "airudder", "quanshi"):  # the callback URLs outcall hands the provider
        assert settings[key]["webhookUrl"] == f"{local_stack.url}/webhooks/{key}", key
