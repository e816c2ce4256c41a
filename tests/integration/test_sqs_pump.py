"""The SQS pump against moto's SQS: batches worked in parallel up to the trigger's concurrency,
partial batch failures redelivered, the queue's visibility timeout honoured."""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from typing import Any

import boto3
import pytest

from local import pumps
from local.runtime import Runtime
from local.template import ACCOUNT_ID, REGION, Stack


class Recorder:
    """Stands in for Runtime.invoke: records every delivery and how many run at once."""

    def __init__(self, work: Any = None) -> None:
        self.lock = threading.Lock()
        self.deliveries: list[list[dict[str, Any]]] = []
        self.isolated: list[bool] = []  # each delivery asked for a worker process (local.workers)
        self.running = 0
        self.most_running = 0
        self.work = work or (lambda records: {"batchItemFailures": []})

    def __call__(
        self, fn: Any, event: dict[str, Any], trigger: str, detail: str = "", *, isolated: bool = False
    ) -> Any:
        with self.lock:
            self.deliveries.append(event["Records"])
            self.isolated.append(isolated)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return self.work(event["Records"])
        finally:
            with self.lock:
                self.running -= 1

    def bodies(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(r["body"] for batch in self.deliveries for r in batch)


def wait_until(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture
def sqs(aws: Stack) -> Any:
    return boto3.client("sqs", region_name=REGION)


def make_pump(
    aws: Stack,
    sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
    recorder: Recorder,
    *,
    queue: str,
    batch_size: int,
    concurrency: int,
    visibility: int = 300,
    retry_delay: int = 1,
) -> tuple[pumps.SqsPump, str]:
    url = sqs.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"]
    runtime = Runtime(aws.functions())
    monkeypatch.setattr(runtime, "invoke", recorder)
    fn = runtime.by_name["outcall-contact-import"]
    source = {
        "queue_arn": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}",
        "batch_size": batch_size,
        "report_failures": True,
        "max_concurrency": None,
    }
    pump = pumps.SqsPump(runtime, fn, source, sqs, retry_delay=retry_delay, concurrency=concurrency)
    return pump, url


def send(sqs: Any, url: str, bodies: list[str]) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)


def test_batches_are_worked_in_parallel_up_to_the_concurrency_and_each_once(
    aws: Stack, sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # four batches must be in the function at the same moment to pass the barrier
    barrier = threading.Barrier(4, timeout=10)

    def work(records: list[dict[str, Any]]) -> dict[str, Any]:
        if json.loads(records[0]["body"])["n"] < 4:
            barrier.wait()
        time.sleep(0.2)
        return {"batchItemFailures": []}

    recorder = Recorder(work)
    pump, url = make_pump(aws, sqs, monkeypatch, recorder, queue="pump-parallel", batch_size=1, concurrency=4)
    send(sqs, url, [json.dumps({"n": n}) for n in range(12)])
    pump.start()
    try:
        wait_until(lambda: sum(recorder.bodies().values()) == 12 and pump.in_flight == 0)
    finally:
        pump.stop()
    assert not barrier.broken
    assert recorder.most_running == 4 == pump.most_in_flight  # never more than the pool
    assert recorder.isolated == [True] * 12  # each batch in a worker process when the runtime has them
    assert set(recorder.bodies().values()) == {1}  # every message once
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_one_worker_means_one_batch_at_a_time(aws: Stack, sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(lambda records: time.sleep(0.1) or {"batchItemFailures": []})
    pump, url = make_pump(aws, sqs, monkeypatch, recorder, queue="pump-serial", batch_size=2, concurrency=1)
    send(sqs, url, [f"m{n}" for n in range(6)])
    pump.start()
    try:
        wait_until(lambda: sum(recorder.bodies().values()) == 6 and pump.in_flight == 0)
    finally:
        pump.stop()
    assert recorder.most_running == 1
    assert all(len(batch) <= 2 for batch in recorder.deliveries)


def test_reported_failures_alone_come_back_after_the_retry_delay(
    aws: Stack, sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_try: dict[str, float] = {}

    def work(records: list[dict[str, Any]]) -> dict[str, Any]:
        failures = []
        for r in records:
            if r["body"] == "flaky" and "flaky" not in first_try:
                first_try["flaky"] = time.monotonic()
                failures.append({"itemIdentifier": r["messageId"]})
        return {"batchItemFailures": failures}

    recorder = Recorder(work)
    pump, url = make_pump(
        aws, sqs, monkeypatch, recorder, queue="pump-partial", batch_size=3, concurrency=2, retry_delay=1
    )
    send(sqs, url, ["a", "flaky", "b"])
    pump.start()
    try:
        wait_until(lambda: recorder.bodies()["flaky"] == 2)
        wait_until(lambda: pump.in_flight == 0)
        time.sleep(1.5)  # nothing else comes back
    finally:
        pump.stop()
    assert recorder.bodies() == {"a": 1, "b": 1, "flaky": 2}
    again = [r for batch in recorder.deliveries[1:] for r in batch]
    assert [r["body"] for r in again] == ["flaky"]
    assert again[0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert int(again[0]["attributes"]["ApproximateFirstReceiveTimestamp"]) > 0
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_raising_function_gets_the_whole_batch_again(aws: Stack, sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}

    def work(records: list[dict[str, Any]]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("cold start failed")
        return {"batchItemFailures": []}

    recorder = Recorder(work)
    pump, url = make_pump(aws, sqs, monkeypatch, recorder, queue="pump-raise", batch_size=5, concurrency=1)
    send(sqs, url, ["x", "y"])
    pump.start()
    try:
        wait_until(lambda: sum(recorder.bodies().values()) == 4 and pump.in_flight == 0)
    finally:
        pump.stop()
    assert recorder.bodies() == {"x": 2, "y": 2}


def test_a_message_stays_hidden_for_the_queues_visibility_timeout_while_it_is_worked(
    aws: Stack, sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(lambda records: time.sleep(2.5) or {"batchItemFailures": []})
    pump, url = make_pump(
        aws, sqs, monkeypatch, recorder, queue="pump-visible", batch_size=1, concurrency=4, visibility=30
    )
    send(sqs, url, ["slow"])
    pump.start()
    try:
        wait_until(lambda: recorder.bodies()["slow"] == 1)
        wait_until(lambda: pump.in_flight == 0, timeout=10)
    finally:
        pump.stop()
    assert recorder.bodies() == {"slow": 1}  # three free workers, but the message was hidden


def test_work_that_outlasts_the_visibility_timeout_is_delivered_again_meanwhile(
    aws: Stack, sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(lambda records: time.sleep(2.5) or {"batchItemFailures": []})
    pump, url = make_pump(
        aws, sqs, monkeypatch, recorder, queue="pump-outlast", batch_size=1, concurrency=2, visibility=1
    )
    send(sqs, url, ["long"])
    pump.start()
    try:
        wait_until(lambda: recorder.bodies()["long"] == 2, timeout=10)
    finally:
        pump.stop()
    assert recorder.most_running == 2  # the second delivery began while the first still ran, as in SQS


def test_concurrency_is_capped_by_the_trigger_and_the_reserved_concurrency(aws: Stack) -> None:
    fn = next(f for f in aws.functions().values() if f.name == "outcall-contact-import")
    chunks = fn.sqs[0]
    assert chunks["max_concurrency"] == 10  # template.yaml: ScalingConfig of the Chunks trigger
    assert pumps.sqs_concurrency(fn, chunks, 4) == 4
    assert pumps.sqs_concurrency(fn, chunks, 32) == 10
    reserved = dataclasses.replace(fn, reserved_concurrency=2)
    assert pumps.sqs_concurrency(reserved, chunks, 4) == 2
    assert pumps.sqs_concurrency(fn, {**chunks, "max_concurrency": None}, 0) == 1
