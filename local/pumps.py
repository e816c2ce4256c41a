"""Pumps: deliver S3 uploads, SQS messages and due EventBridge Scheduler schedules to the
functions template.yaml wires them to, as the AWS services would.

- S3: the bucket notifies an internal queue (moto sends the real S3 event, keys URL-encoded);
  each event goes to every function whose S3 trigger (bucket, event, prefix, suffix) matches, as
  an asynchronous invocation: tried 1 + EventInvokeConfig.MaximumRetryAttempts times, then sent to
  its OnFailure SQS destination as Lambda's destination record.
- SQS: messages in batches of the trigger's BatchSize, up to OUTCALL_LOCAL_CONCURRENCY (4)
  batches of one trigger at once (fewer if the trigger's MaximumConcurrency or the function's
  ReservedConcurrentExecutions say so); with ReportBatchItemFailures only the reported items
  stay, otherwise the whole batch does; failed messages come back after OUTCALL_SQS_RETRY_DELAY
  seconds and moto moves them to the DLQ after maxReceiveCount receives (see SqsPump).
- Scheduler: `at()` schedules fire once when due (then deleted if ActionAfterCompletion is
  DELETE); `rate()` schedules fire every period; failures are retried per RetryPolicy (at most
  OUTCALL_SCHEDULE_MAX_RETRIES locally) and then sent to the target's DeadLetterConfig queue.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from local.runtime import Runtime
from local.template import ACCOUNT_ID, REGION, STACK_NAME, Function

S3_EVENTS_QUEUE = f"{STACK_NAME}-local-s3-events"
DEFAULT_CONCURRENCY = 4  # batches of one SQS trigger worked at once (OUTCALL_LOCAL_CONCURRENCY)
# The stack's pumps long-poll their queues, as Lambda's pollers do: an idle queue costs a request every
# LONG_POLL_SECONDS instead of five a second (moto answers at once when a message is sent, and looks
# again every second for one that became visible); 45 requests a second went to idle queues before.
LONG_POLL_SECONDS = 5
RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def _log(message: str) -> None:
    print(f"[local] {message}", flush=True)


class Pump(threading.Thread):
    interval = 0.2

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.tick()
            except Exception as exc:  # a pump must survive a bad message or a moto hiccup
                _log(f"{self.name}: {type(exc).__name__}: {exc}")
                busy = False
            if not busy:
                self.stopping.wait(self.interval)

    def tick(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        self.stopping.set()


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The Lambda event of an SQS trigger for messages as ReceiveMessage returns them."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def sqs_concurrency(fn: Function, source: dict[str, Any], setting: int) -> int:
    """How many batches of one SQS trigger are worked at once: the local setting
    (OUTCALL_LOCAL_CONCURRENCY), lowered to the trigger's ScalingConfig.MaximumConcurrency and to
    the function's ReservedConcurrentExecutions, as Lambda caps its pollers' invocations."""
    caps = [setting, source.get("max_concurrency"), fn.reserved_concurrency]
    return max(1, min(c for c in caps if c is not None))


class SqsPump(Pump):
    """One SQS trigger. This thread alone receives (moto's ReceiveMessage is not safe to call
    from several threads on one queue) and only when a worker is free; each batch is then worked
    by a thread of its own, at most `concurrency` at a time, as Lambda runs concurrent invocations
    of a queue's function.

    A batch is received with the queue's own visibility timeout (template.yaml), so a message
    stays hidden while its batch is worked and comes back if the work outlasts it, as in SQS.
    After the function answers, the messages it did not fail are deleted; the failed ones (all of
    them when the function raised, or when it does not ReportBatchItemFailures) are made visible
    again after `retry_delay` seconds (OUTCALL_SQS_RETRY_DELAY) instead of the queue's timeout, so
    that retries are seen locally in seconds; moto moves a message to the DLQ after the redrive
    policy's maxReceiveCount receives."""

    def __init__(
        self,
        runtime: Runtime,
        fn: Function,
        source: dict[str, Any],
        sqs: Any,
        retry_delay: int,
        concurrency: int = 1,
        *,
        wait_seconds: int = 0,
    ) -> None:
        super().__init__(f"sqs:{fn.name}")
        self.runtime, self.fn, self.sqs = runtime, fn, sqs
        self.wait_seconds = wait_seconds  # ReceiveMessage's long poll (start_pumps: LONG_POLL_SECONDS)
        self.batch_size = min(10, source["batch_size"])
        self.report_failures = source["report_failures"]
        self.queue_arn = source["queue_arn"]
        self.queue_name = self.queue_arn.rsplit(":", 1)[1]
        self.queue_url = sqs.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
        self.retry_delay = retry_delay
        self.concurrency = concurrency
        self._free = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0  # the most batches worked at once so far (tests, benchmarks)

    def tick(self) -> bool:
        if not self._free.acquire(timeout=self.interval):
            return True  # every worker busy: ask again, the wait was the acquire
        try:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=self.wait_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        except BaseException:
            self._free.release()
            raise
        if not messages:
            self._free.release()
            return False
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        threading.Thread(target=self._work, args=(messages,), name=f"{self.name}:batch", daemon=True).start()
        return True

    def _work(self, messages: list[dict[str, Any]]) -> None:
        try:
            self.deliver(messages)
        except Exception as exc:  # moto gone while stopping, or a hiccup: the messages come back
            _log(f"{self.name}: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self.in_flight -= 1
            self._free.release()

    def deliver(self, messages: list[dict[str, Any]]) -> None:
        event = sqs_event(messages, self.queue_arn)
        failed: set[str] = set()
        try:
            result = self.runtime.invoke(self.fn, event, "sqs", self.queue_name, isolated=True)
            if self.report_failures and isinstance(result, dict):
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
        except Exception:
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        again = [m for m in messages if m["MessageId"] in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        if again:
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self.retry_delay}
                    for i, m in enumerate(again)
                ],
            )


class S3Pump(Pump):
    def __init__(self, runtime: Runtime, sqs: Any, s3: Any, queue_url: str, *, wait_seconds: int = 0) -> None:
        super().__init__("s3")
        self.runtime, self.sqs, self.s3, self.queue_url = runtime, sqs, s3, queue_url
        self.wait_seconds = wait_seconds
        self.targets = [(fn, src) for fn in runtime.functions.values() for src in fn.s3]

    @staticmethod
    def matches(src: dict[str, Any], bucket: str, event_name: str, key: str) -> bool:
        if src["bucket"] != bucket or not key.startswith(src["prefix"]) or not key.endswith(src["suffix"]):
            return False
        return any(fnmatch.fnmatch(f"s3:{event_name}", pattern) for pattern in src["events"])

    def complete(self, record: dict[str, Any], bucket: str, key: str) -> None:
        """moto leaves out parts of the event that S3 sends; add them so parsers see the real shape."""
        record.setdefault("userIdentity", {"principalId": "AWS:LOCAL"})
        record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
        record.setdefault("responseElements", {"x-amz-request-id": uuid.uuid4().hex[:16], "x-amz-id-2": "local"})
        record["s3"].setdefault("s3SchemaVersion", "1.0")
        record["s3"]["bucket"].setdefault("ownerIdentity", {"principalId": "LOCAL"})
        obj = record["s3"]["object"]
        if "versionId" not in obj and record["eventName"].startswith("ObjectCreated"):
            with contextlib.suppress(Exception):
                version = self.s3.head_object(Bucket=bucket, Key=key).get("VersionId")
                if version and version != "null":
                    obj["versionId"] = version

    def tick(self) -> bool:
        from urllib.parse import unquote_plus

        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_seconds
        ).get("Messages", [])
        for message in messages:
            body = json.loads(message["Body"])
            for record in body.get("Records", []):  # an s3:TestEvent has none
                bucket = record["s3"]["bucket"]["name"]
                key = unquote_plus(record["s3"]["object"]["key"])
                self.complete(record, bucket, key)
                for fn, src in self.targets:
                    if self.matches(src, bucket, record["eventName"], key):
                        self.invoke_async(fn, {"Records": [record]}, key)
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return bool(messages)

    def invoke_async(self, fn: Function, event: dict[str, Any], key: str) -> None:
        """As Lambda runs an asynchronous invocation: the first attempt and the function's
        EventInvokeConfig.MaximumRetryAttempts more (at once here, not minutes apart); an event that
        failed them all goes to its on-failure destination as Lambda's destination record."""
        attempts = 1 + fn.async_retries
        for attempt in range(1, attempts + 1):
            try:
                self.runtime.invoke(fn, event, "s3", key)
                return
            except Exception as exc:
                _log(f"s3 -> {fn.name} failed for {key} (attempt {attempt} of {attempts}): {exc}")
                error = exc
        if fn.on_failure:
            self.sqs.send_message(
                QueueUrl=self.sqs.get_queue_url(QueueName=fn.on_failure.rsplit(":", 1)[1])["QueueUrl"],
                MessageBody=json.dumps(destination_record(fn, event, error, attempts)),
            )


def destination_record(fn: Function, event: dict[str, Any], error: BaseException, attempts: int) -> dict[str, Any]:
    """The record Lambda sends to an asynchronous invocation's on-failure destination."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{fn.arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": []},
    }


class SchedulerPump(Pump):
    interval = 0.5

    def __init__(self, runtime: Runtime, scheduler: Any, sqs: Any, max_retries: int) -> None:
        super().__init__("scheduler")
        self.runtime, self.scheduler, self.sqs = runtime, scheduler, sqs
        self.max_retries = max_retries
        self.fired: dict[str, float] = {}  # schedule key -> last firing (epoch seconds)
        self.created: dict[str, float] = {}

    def schedules(self) -> list[dict[str, Any]]:
        out = []
        groups = [g["Name"] for g in self.scheduler.list_schedule_groups().get("ScheduleGroups", [])]
        for group in groups or ["default"]:
            for summary in self.scheduler.list_schedules(GroupName=group).get("Schedules", []):
                out.append(self.scheduler.get_schedule(Name=summary["Name"], GroupName=group))
        return out

    @staticmethod
    def at_time(expression: str, tz: str | None) -> datetime | None:
        match = re.fullmatch(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)", expression)
        if not match:
            return None
        from zoneinfo import ZoneInfo

        return datetime.fromisoformat(match.group(1)).replace(tzinfo=ZoneInfo(tz or "UTC"))

    @staticmethod
    def rate_seconds(expression: str) -> int | None:
        """The period of a rate() schedule; OUTCALL_RATE_MAX_SECONDS (unset by default) shortens
        longer periods locally, so a demo or a test sees the pollers and the dispatcher in seconds."""
        match = re.fullmatch(r"rate\((\d+)\s+(\w+)\)", expression)
        if not match:
            return None
        period = int(match.group(1)) * RATE_UNITS[match.group(2)]
        cap = os.environ.get("OUTCALL_RATE_MAX_SECONDS")
        return min(period, int(cap)) if cap else period

    def tick(self) -> bool:
        now = time.time()
        schedules = self.schedules()
        present = {f"{s.get('GroupName', 'default')}/{s['Name']}/{s['ScheduleExpression']}" for s in schedules}
        for gone in [k for k in self.fired if k not in present]:  # deleted or moved: forget it
            del self.fired[gone]
        for gone in [k for k in self.created if k not in present]:
            del self.created[gone]
        for schedule in schedules:
            if schedule.get("State", "ENABLED") != "ENABLED":
                continue
            key = f"{schedule.get('GroupName', 'default')}/{schedule['Name']}/{schedule['ScheduleExpression']}"
            expression = schedule["ScheduleExpression"]
            at = self.at_time(expression, schedule.get("ScheduleExpressionTimezone"))
            if at is not None:
                if key in self.fired or at.timestamp() > now:
                    continue
            else:
                period = self.rate_seconds(expression)
                if period is None:
                    continue  # cron() is not run locally
                self.created.setdefault(key, now)
                if now - self.fired.get(key, self.created[key]) < period:
                    continue
            self.fired[key] = now
            self.fire(schedule)
        return False

    def fire(self, schedule: dict[str, Any]) -> None:
        target = schedule["Target"]
        fn = self.runtime.by_arn.get(target["Arn"])
        raw_input = target.get("Input")
        event: Any = json.loads(raw_input) if raw_input else {}
        attempts = 1 + min(self.max_retries, int((target.get("RetryPolicy") or {}).get("MaximumRetryAttempts", 185)))
        delivered = False
        for _ in range(attempts if fn else 0):
            try:
                self.runtime.invoke(fn, event, "schedule", schedule["Name"])  # type: ignore[arg-type]
                delivered = True
                break
            except Exception:
                time.sleep(0.2)
        if not delivered:
            dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
            _log(f"schedule {schedule['Name']} not delivered{' -> ' + dlq if dlq else ''}")
            if dlq:
                url = self.sqs.get_queue_url(QueueName=dlq.rsplit(":", 1)[1])["QueueUrl"]
                self.sqs.send_message(QueueUrl=url, MessageBody=raw_input or "{}")
        if schedule.get("ActionAfterCompletion") == "DELETE" and self.at_time(schedule["ScheduleExpression"], None):
            with contextlib.suppress(self.scheduler.exceptions.ResourceNotFoundException):
                self.scheduler.delete_schedule(Name=schedule["Name"], GroupName=schedule.get("GroupName", "default"))


def s3_notifications(session: Any, runtime: Runtime, sqs: Any) -> str:
    """Point every bucket with a function trigger at the internal S3 events queue."""
    queue_url: str = sqs.create_queue(QueueName=S3_EVENTS_QUEUE)["QueueUrl"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{S3_EVENTS_QUEUE}"
    s3 = session.client("s3", region_name=REGION)
    buckets = {src["bucket"] for fn in runtime.functions.values() for src in fn.s3}
    for bucket in buckets:
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"Id": f"local-{uuid.uuid4().hex[:8]}", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
                ]
            },
        )
    return queue_url


def start_pumps(session: Any, runtime: Runtime) -> list[Pump]:
    sqs = session.client("sqs", region_name=REGION)
    retry_delay = int(os.environ.get("OUTCALL_SQS_RETRY_DELAY", "1"))
    concurrency = int(os.environ.get("OUTCALL_LOCAL_CONCURRENCY", str(DEFAULT_CONCURRENCY)))
    s3 = session.client("s3", region_name=REGION)
    wait = LONG_POLL_SECONDS
    pumps: list[Pump] = [S3Pump(runtime, sqs, s3, s3_notifications(session, runtime, sqs), wait_seconds=wait)]
    for fn in runtime.functions.values():
        for source in fn.sqs:
            cap = sqs_concurrency(fn, source, concurrency)
            pumps.append(SqsPump(runtime, fn, source, sqs, retry_delay, cap, wait_seconds=wait))
    pumps.append(
        SchedulerPump(
            runtime,
            session.client("scheduler", region_name=REGION),
            sqs,
            int(os.environ.get("OUTCALL_SCHEDULE_MAX_RETRIES", "2")),
        )
    )
    for pump in pumps:
        pump.start()
    return pumps


def utc_in(seconds: float) -> str:
    """An `at()` expression `seconds` from now, in UTC (for tests and the demo)."""
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return f"at({when.strftime('%Y-%m-%dT%H:%M:%S')})"
