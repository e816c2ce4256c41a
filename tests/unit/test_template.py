"""template.yaml keeps its promises: every trigger wired, every queue dead-lettered, policies named."""

from __future__ import annotations

import json
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


# ---------------------------------------------------------------- issue 16: floods, failed async events, access logs

ASYNC_EVENT_TYPES = ("S3", "SNS", "EventBridgeRule", "CloudWatchEvent", "IoTRule", "CloudWatchLogs")


def test_every_asynchronous_trigger_has_an_on_failure_destination_with_an_alarm(stack: Stack) -> None:
    """S3 (and any other asynchronous source) invokes a function once and retries twice: after that
    the event is dropped unless the function sends it somewhere."""
    checked = 0
    for logical, res in stack.of_type("AWS::Serverless::Function").items():
        props = res["Properties"]
        if not any(e["Type"] in ASYNC_EVENT_TYPES for e in (props.get("Events") or {}).values()):
            continue
        checked += 1
        on_failure = props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        assert on_failure["Type"] == "SQS", logical
        queue = on_failure["Destination"]["Fn::GetAtt"][0]
        assert stack.resources[queue]["Type"] == "AWS::SQS::Queue" and queue.endswith("DLQ")
        alarms = [
            a["Properties"]
            for a in stack.of_type("AWS::CloudWatch::Alarm").values()
            if a["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": [queue, "QueueName"]}
        ]
        assert alarms and alarms[0]["Threshold"] == 0
    assert checked >= 1  # ContactImportFunction's S3 upload trigger


@pytest.mark.parametrize("function", ["WebhookIntakeFunction", "AuthorizerFunction"])
def test_functions_a_flood_reaches_first_have_reserved_concurrency(stack: Stack, function: str) -> None:
    reserved = stack.props(function)["ReservedConcurrentExecutions"]
    condition, value, otherwise = reserved["Fn::If"]
    assert value["Ref"] in stack.doc["Parameters"] and int(stack.doc["Parameters"][value["Ref"]]["Default"]) > 0
    assert otherwise == {"Ref": "AWS::NoValue"} and condition in stack.doc["Conditions"]


def test_the_api_is_throttled_and_webhooks_more_strictly(stack: Stack) -> None:
    props = stack.props("HttpApi")
    params = stack.doc["Parameters"]

    def value(ref: dict[str, str]) -> int:
        return int(params[ref["Ref"]]["Default"])

    default = props["DefaultRouteSettings"]
    webhook_routes = [f"{r.method} {r.path}" for r in stack.functions()["WebhookIntakeFunction"].routes]
    webhook_routes = [r for r in webhook_routes if r.startswith("POST /webhooks")]
    assert len(webhook_routes) == 2
    for route in webhook_routes:
        settings = props["RouteSettings"][route]
        assert value(settings["ThrottlingRateLimit"]) < value(default["ThrottlingRateLimit"])
        assert value(settings["ThrottlingBurstLimit"]) < value(default["ThrottlingBurstLimit"])


def test_the_call_list_bucket_logs_access_to_a_private_log_bucket(stack: Stack) -> None:
    logging_config = stack.props("CallListBucket")["LoggingConfiguration"]
    assert logging_config["DestinationBucketName"] == {"Ref": "AccessLogBucket"}
    logs = stack.props("AccessLogBucket")
    assert all(logs["PublicAccessBlockConfiguration"].values())
    assert logs["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert logs["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"]
    statements = stack.props("AccessLogBucketPolicy")["PolicyDocument"]["Statement"]
    [allow] = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"} and allow["Action"] == "s3:PutObject"
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert "call-lists" in str(allow["Condition"]["ArnLike"]["aws:SourceArn"])


def test_checkov_exceptions_are_each_justified() -> None:
    """.checkov.yaml lists the accepted exceptions of `make lint`, each with its reason beside it."""
    import re

    import yaml

    text = (ROOT / ".checkov.yaml").read_text()
    config = yaml.safe_load(text)
    assert "template.yaml" in config["file"] and config["framework"] == ["cloudformation"]
    skipped = config["skip-check"]
    assert skipped, "every accepted exception is listed"
    for check in skipped:
        line = next(line for line in text.splitlines() if re.match(rf"\s*-\s*{check}\b", line))
        reason = line.partition("#")[2].strip()
        assert len(reason) > 20, f"{check}: say why it is accepted"


# ---------------------------------------------------------------- issue 14: do-not-call lists uploaded as files


def test_dnc_upload_routes_are_task_controls_and_their_files_reach_contact_import(stack: Stack) -> None:
    functions = stack.functions()
    routes = {r.route_key for r in functions["TaskControlFunction"].routes}
    assert {
        "POST /dnc/uploads",
        "GET /dnc/uploads/{importId}",
        "POST /tasks/{taskId}/dnc/uploads",
        "GET /tasks/{taskId}/dnc/uploads/{importId}",
    } <= routes
    triggers = functions["ContactImportFunction"].s3
    prefixes = sorted(t["prefix"] for t in triggers)
    assert prefixes == ["dnc-imports/", "imports/"]
    assert len({t["bucket"] for t in triggers}) == 1
    # S3 refuses two notifications of one event type whose prefixes overlap
    assert not any(a != b and b.startswith(a) for a in prefixes for b in prefixes)
    # the uploaded lists expire like call lists
    rules = stack.props("CallListBucket")["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "dnc-imports/" and r["ExpirationInDays"] for r in rules)


def test_task_control_may_only_sign_puts_under_dnc_imports(stack: Stack) -> None:
    """The presigned PUT is signed with the function's role: it needs s3:PutObject there, and nothing
    else of the bucket (it reads no file)."""
    policies = stack.props("TaskControlFunction")["Policies"]
    s3 = [
        s
        for policy in policies
        if isinstance(policy, dict) and "Statement" in policy
        for s in policy["Statement"]
        if any(str(a).startswith("s3:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    ]
    assert len(s3) == 1 and s3[0]["Action"] == "s3:PutObject" and s3[0]["Effect"] == "Allow"
    assert s3[0]["Resource"]["Fn::Sub"].endswith("-call-lists-${AWS::AccountId}/dnc-imports/*")
    assert not any(isinstance(p, dict) and {"S3ReadPolicy", "S3WritePolicy", "S3CrudPolicy"} & set(p) for p in policies)


# ---------------------------------------------------------------- issue 16 item 2: imports always end


def test_every_import_dlq_is_consumed_by_the_import_failures_function(stack: Stack) -> None:
    fn = stack.functions()["ImportFailuresFunction"]
    consumed = {source["queue_arn"] for source in fn.sqs}
    assert consumed == {stack.get_att("ImportDLQ", "Arn"), stack.get_att("UploadDLQ", "Arn")}
    # and what reaches UploadDLQ is the S3 trigger's on-failure destination
    assert stack.functions()["ContactImportFunction"].on_failure == stack.get_att("UploadDLQ", "Arn")
    [schedule] = fn.schedules
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"
    assert json.loads(schedule["Input"]) == {"check": "stalled-imports"}


def test_the_import_failures_function_has_least_privilege(stack: Stack) -> None:
    policies = stack.props("ImportFailuresFunction")["Policies"]
    named = [next(iter(p)) for p in policies if "Statement" not in p]
    assert named == ["SQSSendMessagePolicy"]  # no CRUD policy, no secrets: it calls no provider
    statements = [s for p in policies if "Statement" in p for s in p["Statement"]]
    actions = {a for s in statements for a in s["Action"]}
    assert not any(a.endswith("*") for a in actions)
    assert "dynamodb:DeleteItem" not in actions and "dynamodb:Scan" not in actions
    s3 = next(s for s in statements if any(a.startswith("s3:") for a in s["Action"]))
    assert s3["Resource"]["Fn::Sub"].endswith("/work/*")  # chunk files and report parts only


def test_open_imports_have_a_sparse_index_for_the_stalled_check(stack: Stack) -> None:
    indexes = {i["IndexName"]: i for i in stack.props("Table")["GlobalSecondaryIndexes"]}
    assert [k["AttributeName"] for k in indexes["gsi2"]["KeySchema"]] == ["gsi2pk", "gsi2sk"]
    alarms = {a["Properties"].get("MetricName") for a in stack.of_type("AWS::CloudWatch::Alarm").values()}
    assert {"ImportStepsDeadLettered", "UploadsFailed", "ImportsStalled"} <= alarms
