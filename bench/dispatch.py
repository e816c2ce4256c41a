"""The dispatcher's figures (issue "One dialing engine"): provider calls per wave against the fewest
possible (ceil(released / batch size), target 1.0), start-to-first-provider-call latency, and decisions
per second in process (releases through moto's DynamoDB, and the retry policy alone).

    PYTHONPATH=layers/outcall python -m bench.dispatch [--contacts N]

moto runs in process (mock_aws): its writes cost milliseconds each, so the release rate is a lower
bound of what DynamoDB gives."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from bench import ENVIRONMENT

RESULTS = Path(__file__).resolve().parent / "results" / "dispatch.json"


def run(contacts: int = 5000, hopper: int = 1000, batch: int = 100) -> dict[str, Any]:
    os.environ.update(ENVIRONMENT)
    from moto import mock_aws

    with mock_aws():
        result = _measure(contacts, hopper, batch)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _measure(n: int, hopper: int, batch: int) -> dict[str, Any]:
    import boto3

    from local.moto_atomic import make_dynamodb_writes_atomic
    from local.template import Stack

    make_dynamodb_writes_atomic()
    stack = Stack(endpoint="https://sqs.us-east-1.amazonaws.com")
    stack.create_resources(boto3.Session(region_name="us-east-1"))
    os.environ.update(stack.environment())

    from outcall.calllists import process_records
    from outcall.contacts import add_rows
    from outcall.dispatch import Dispatcher, on_call_event, retry_decision
    from outcall.models import CallEvent, ContactOutcome, ContactSpec, RetryPolicy, RetryRule, Task, TaskSettings
    from outcall.providers.base import Capabilities, Provider, ProviderLimits
    from outcall.store import Store, utcnow
    from outcall.tasks import TaskService

    class Counting(Provider):
        """Takes every contact; records when each call came."""

        key = "nxcloud"
        limits: ClassVar[ProviderLimits] = ProviderLimits(batch_size=batch)
        capabilities: ClassVar[Capabilities] = Capabilities()

        def __init__(self) -> None:
            super().__init__({})
            self.calls: list[tuple[float, int]] = []
            self.held: list[ContactSpec] = []

        def start_task(self, provider_task_id: str) -> None:
            return None

        def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
            self.calls.append((time.perf_counter(), len(contacts)))
            self.held.extend(contacts)
            return [ContactOutcome(e164=c.e164, accepted=True, provider_ref=c.release_key) for c in contacts]

    store, provider = Store(), Counting()
    now = utcnow()
    task = Task(
        task_id="tsk_bench",
        name="bench",
        provider="nxcloud",
        type="auto",
        settings=TaskSettings.model_validate({"hopperLevel": hopper}),
        created_at=now,
        updated_at=now,
    )
    store.create_task(task, max_tasks=100)
    task = store.finish_task(task.task_id, task.version, {"providerTaskId": "p-1"})
    rows = list(process_records([{"mobile": f"+8613{800000000 + i:09d}"} for i in range(n)], default_region="CN"))
    started = time.perf_counter()
    add_rows(store, task, "imp_bench", rows, reserved=n)
    import_seconds = time.perf_counter() - started

    clock_now = [utcnow() + timedelta(seconds=5)]
    holder: list[TaskService] = []
    dispatcher = Dispatcher(
        store, lambda key: provider, complete=lambda task_id: holder[0].complete(task_id), clock=lambda: clock_now[0]
    )
    service = TaskService(store, lambda key: provider, dispatch=dispatcher.run)
    holder.append(service)

    t0 = time.perf_counter()
    service.transition(task.task_id, "start")
    start_seconds = time.perf_counter() - t0
    first_call_latency = provider.calls[0][0] - t0 if provider.calls else None

    waves: list[dict[str, Any]] = []
    release_seconds = start_seconds
    result_seconds = 0.0
    done = len(provider.held)
    waves.append({"released": done, "calls": len(provider.calls)})
    while True:
        running = store.get_task(task.task_id)
        assert running is not None
        t = time.perf_counter()
        for spec in provider.held[-waves[-1]["released"] :] if waves[-1]["released"] else []:
            event = CallEvent(
                provider="nxcloud",
                dedup_key=f"d-{spec.release_key}",
                provider_contact_ref=spec.release_key,
                phone=spec.e164,
                status="completed",
            )
            on_call_event(store, running, event, f"r-{spec.release_key}", clock_now[0])
        result_seconds += time.perf_counter() - t
        calls_before = len(provider.calls)
        t = time.perf_counter()
        outcome = dispatcher.run(task.task_id)
        elapsed = time.perf_counter() - t
        release_seconds += elapsed
        if outcome.released:
            waves.append({"released": outcome.released, "calls": len(provider.calls) - calls_before})
        else:
            break
    ratios = [w["calls"] / math.ceil(w["released"] / batch) for w in waves if w["released"]]

    policy = RetryPolicy(max_attempts=3, outcomes={"busy": RetryRule(attempts=2, delay_minutes=5)})
    when = datetime(2030, 1, 1, tzinfo=UTC)
    t = time.perf_counter()
    decisions = 200_000
    for i in range(decisions):
        retry_decision(policy, "busy" if i % 2 else "no-answer", attempts=1 + i % 3, outcome_counts={}, now=when)
    policy_rate = decisions / (time.perf_counter() - t)

    final = store.get_task(task.task_id)
    return {
        "contacts": n,
        "hopper_level": hopper,
        "batch_size": batch,
        "waves": len(waves),
        "provider_calls_per_wave_ratio": {"max": max(ratios), "mean": statistics.mean(ratios), "target": 1.0},
        "released_once_each": len({c.e164 for c in provider.held}) == len(provider.held) == n,
        "task_completed": final is not None and final.status == "completed",
        "start_to_first_provider_call_seconds": round(first_call_latency or 0.0, 4),
        "releases_per_second_moto_in_process": round(n / release_seconds, 1),
        "results_per_second_moto_in_process": round(n / result_seconds, 1) if result_seconds else None,
        "import_rows_per_second_moto_in_process": round(n / import_seconds, 1),
        "retry_policy_decisions_per_second": round(policy_rate),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--hopper", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(run(args.contacts, args.hopper, args.batch), indent=2))
