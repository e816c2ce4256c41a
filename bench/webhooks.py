"""Issue 7 benchmarks.

1. Warm webhook handling, in process against moto: p50 / p99 of one push through the
   webhook_intake handler (verify, one conditional PutItem, one SQS send), next to the time of
   one plain DynamoDB PutItem on the same moto in the same run.
2. Cold import time of each handler module (`python -X importtime`), next to a bare
   `import boto3` in the same run; target: at most 1.5 times.

`python -m bench.webhooks` (PYTHONPATH=layers/outcall, as `make bench` sets it) writes
bench/results/webhooks.json.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "webhooks.json"
HANDLERS = {
    "authorizer": "authorizer_handler",
    "contact_import": "contact_import_handler",
    "task_control": "task_control_handler",
    "conference_dialing": "conference_dialing_handler",
    "webhook_intake": "webhook_intake_handler",
}
SECRET = "bench-webhook-secret"


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def warm_webhooks(pushes: int = 500) -> dict[str, Any]:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws

    from local.template import Stack

    with mock_aws():
        stack = Stack(endpoint="https://sqs.us-east-1.amazonaws.com")
        settings = {
            "airudder": {"baseUrl": "http://127.0.0.1:9", "appKey": "k", "appSecret": "s", "webhookSecret": SECRET}
        }
        stack.create_resources(boto3.Session(region_name="us-east-1"), {"ProviderSecret": json.dumps(settings)})
        os.environ.update(stack.environment())
        sys.path.insert(0, str(ROOT / "functions" / "webhook_intake"))
        import webhook_intake_handler as handler

        from tests.helpers import FakeContext, load_event

        base = load_event("api_docs_health")
        base["routeKey"] = base["requestContext"]["routeKey"] = "POST /webhooks/{provider}/{kind}"
        base["rawPath"] = base["requestContext"]["http"]["path"] = "/webhooks/airudder/call"
        base["requestContext"]["http"]["method"] = "POST"
        base["pathParameters"] = {"provider": "airudder", "kind": "call"}
        base["queryStringParameters"] = {"token": SECRET}
        base["rawQueryString"] = f"token={SECRET}"
        context = FakeContext()

        def push(i: int) -> float:
            event = copy.deepcopy(base)
            body = {
                "workflow_id": "wf-1",
                "node_id": "n1",
                "callee": {"case_id": f"case-{i}", "phone": "+8613800138000"},
                "call": {"call_id": f"call-{i}-{uuid.uuid4().hex[:6]}", "task_id": "t-1", "call_times": 1},
                "ring_type": "answered",
                "hangup_type": "normal",
                "intention": "A",
            }
            event["body"] = json.dumps(body)
            started = time.perf_counter()
            answer = handler.lambda_handler(event, context)
            elapsed = time.perf_counter() - started
            if answer["statusCode"] != 200:
                raise RuntimeError(f"push refused: {answer}")
            return elapsed

        for i in range(20):  # warm up
            push(i)
        latencies = [push(1000 + i) for i in range(pushes)]

        table = boto3.client("dynamodb", region_name="us-east-1")
        name = stack.physical_name("Table")
        puts = []
        for i in range(pushes):
            started = time.perf_counter()
            table.put_item(TableName=name, Item={"pk": {"S": f"BENCH#{i}"}, "sk": {"S": "X"}, "v": {"S": "x" * 200}})
            puts.append(time.perf_counter() - started)

    ms = 1000.0
    return {
        "pushes": pushes,
        "push_p50_ms": round(_percentile(latencies, 50) * ms, 2),
        "push_p99_ms": round(_percentile(latencies, 99) * ms, 2),
        "put_item_p50_ms": round(statistics.median(puts) * ms, 2),
        "put_item_p99_ms": round(_percentile(puts, 99) * ms, 2),
        "push_over_put_item_p50": round(statistics.median(latencies) / statistics.median(puts), 2),
    }


def _import_us(module: str, extra_path: list[Path]) -> int:
    """Cumulative microseconds of `import module` in a fresh interpreter (-X importtime)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in extra_path)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"no importtime line for {module}")


def cold_imports(repeats: int = 5) -> dict[str, Any]:
    layer = ROOT / "layers" / "outcall"
    boto3_us = statistics.median(_import_us("boto3", [layer]) for _ in range(repeats))
    out: dict[str, Any] = {"boto3_ms": round(boto3_us / 1000, 1), "target_ratio": 1.5, "handlers": {}}
    for folder, module in HANDLERS.items():
        us = statistics.median(_import_us(module, [layer, ROOT / "functions" / folder]) for _ in range(repeats))
        out["handlers"][module] = {"ms": round(us / 1000, 1), "ratio_to_boto3": round(us / boto3_us, 2)}
    return out


def run() -> dict[str, Any]:
    result = {"benchmark": "webhooks", "warm": warm_webhooks(), "cold_imports": cold_imports()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
