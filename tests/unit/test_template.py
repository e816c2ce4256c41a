"""template.yaml keeps its promises: every trigger wired, every queue dead-lettered, policies named."""

from __future__ import annotations

from typing import Any

import pytest

from local.template import ROOT, Stack, load


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack(load())


def _walk(value: Any):  # type: ignore[no-untyped-def]
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def test_every_function_handler_exists_where_lambda_will_import_it(stack: Stack) -> None:
    for fn in stack.functions().values():
        module, _, func = fn.handler.rpartition(".")
        path = fn.code_uri / (module + ".py")
        assert path.is_file(), f"{fn.logical_id}: {path} missing"
        assert f"def {func}(" in path.read_text(), f"{fn.logical_id}: no {func} in {path}"


def test_design_routes_are_all_declared(stack: Stack) -> None:
    routes = {r.route_key: fn.logical_id for fn in stack.functions().values() for r in fn.routes}
    expected = {
        "GET /health": "ApiDocsFunction",
        "POST /tasks": "TaskControlFunction",
        "GET /tasks": "TaskControlFunction",
        "GET /tasks/{taskId}": "TaskControlFunction",
        "PATCH /tasks/{taskId}": "TaskControlFunction",
        "POST /tasks/{taskId}/start": "TaskControlFunction",
        "POST /tasks/{taskId}/pause": "TaskControlFunction",
        "POST /tasks/{taskId}/stop": "TaskControlFunction",
        "POST /tasks/{taskId}/clone": "TaskControlFunction",
        "DELETE /tasks/{taskId}": "TaskControlFunction",
        "POST /tasks/{taskId}/contacts": "ContactImportFunction",
        "GET /tasks/{taskId}/contacts": "ContactImportFunction",
        "POST /tasks/{taskId}/uploads": "ContactImportFunction",
        "GET /imports/{importId}": "ContactImportFunction",
        "GET /tasks/{taskId}/calls": "WebhookIntakeFunction",
        "PUT /events/{eventId}": "ConferenceDialingFunction",
        "GET /events/{eventId}": "ConferenceDialingFunction",
        "DELETE /events/{eventId}": "ConferenceDialingFunction",
        "POST /events/{eventId}/calls": "ConferenceDialingFunction",
        "POST /webhooks/{provider}": "WebhookIntakeFunction",
        "POST /webhooks/{provider}/{kind}": "WebhookIntakeFunction",
    }
    for key, function in expected.items():
        assert routes.get(key) == function, key


def test_only_public_routes_skip_the_authorizer(stack: Stack) -> None:
    public = {r.route_key for fn in stack.functions().values() for r in fn.routes if not r.authorized}
    assert public == {
        "GET /health",
        "GET /openapi.json",
        "GET /swagger",
        "POST /webhooks/{provider}",
        "POST /webhooks/{provider}/{kind}",
    }


def test_every_sqs_trigger_reports_partial_batch_failures(stack: Stack) -> None:
    sources = [s for fn in stack.functions().values() for s in fn.sqs]
    assert len(sources) >= 2
    assert all(s["report_failures"] for s in sources)


def test_every_work_queue_has_a_dead_letter_queue(stack: Stack) -> None:
    queues = stack.of_type("AWS::SQS::Queue")
    dlqs = {q for q in queues if q.endswith("DLQ")}
    for name in set(queues) - dlqs:
        redrive = stack.props(name)["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"]["Fn::GetAtt"][0] in dlqs
        assert int(redrive["maxReceiveCount"]) >= 2


def test_no_wildcard_resource_in_any_policy(stack: Stack) -> None:
    for node in _walk(stack.doc["Resources"]):
        if "Effect" in node and "Action" in node:
            resource = node.get("Resource")
            assert resource != "*" and resource != ["*"], node


def test_table_has_gsi_ttl_pitr_and_on_demand(stack: Stack) -> None:
    props = stack.props("Table")
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["GlobalSecondaryIndexes"]
    assert props["TimeToLiveSpecification"]["Enabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_bucket_is_private_encrypted_versioned_with_report_lifecycle(stack: Stack) -> None:
    props = stack.props("CallListBucket")
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert any(r.get("Prefix") == "reports/" for r in props["LifecycleConfiguration"]["Rules"])


def test_layer_is_built_by_sam_from_its_lock(stack: Stack) -> None:
    layer = stack.resources["OutcallLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    content = ROOT / layer["Properties"]["ContentUri"]
    assert (content / "requirements.lock").is_file()
    recipe = (content / "Makefile").read_text(encoding="utf-8")
    assert "build-OutcallLayer:" in recipe
    assert "--no-deps" in recipe and "-r requirements.lock" in recipe


def test_scheduler_passrole_is_scoped_to_the_scheduler_role(stack: Stack) -> None:
    for node in _walk(stack.doc["Resources"]):
        if node.get("Action") == "iam:PassRole":
            assert node["Resource"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
            assert node["Condition"]["StringEquals"]["iam:PassedToService"] == "scheduler.amazonaws.com"
