"""webhook_intake: provider pushes, the result processor (SQS) and the result pollers (schedule).

Thin: a push is verified, kept once and queued by outcall.results.receive_push (the answer is
200 well inside the providers' 10 s); the SQS processor applies kept pushes with
outcall.results.process_push (partial batch failures; a push that fails every retry waits in the
DLQ: `python -m outcall.redrive results`); the rate schedule runs outcall.results.poll_all."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall import queues, results
from outcall.api import OPEN, IsoDateTime, answers, configure, error_body, json_body, limit, resolve
from outcall.config import WebhookIntakeConfig, provider_settings
from outcall.examples import CALL_PAGE
from outcall.models import CallStatus, TaskLifecycleEvent
from outcall.observability import logger, metrics, tracer
from outcall.providers import get_provider
from outcall.providers.base import Provider
from outcall.store import default_store

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=json_body)
configure(app)

MAX_PUSH_BYTES = 256 * 1024
# What a push is answered: 200 as soon as it is verified and kept (the providers wait 10 s at most).
PUSH_ANSWER: dict[str, Any] = {
    content_types.APPLICATION_JSON: {
        "schema": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "pushId": {"type": "string"},
                "duplicate": {"type": "boolean", "description": "the same push was kept before"},
            },
            "required": ["status", "pushId", "duplicate"],
        },
        "examples": {"kept": {"value": {"status": "ok", "pushId": "psh_0f3a9c2b7d1e4a5b", "duplicate": False}}},
    }
}
PUSH_NOTES = {
    400: "The push's body cannot be read",
    401: "The push's signature or shared secret does not match (no bearer token is needed here)",
    404: "No such provider",
    422: "The provider sends no pushes (it is polled), or the push is not one it sends",
}
ProviderName = Annotated[str, Path(alias="provider", min_length=1, max_length=32)]
Kind = Annotated[str, Path(alias="kind", min_length=1, max_length=64)]
TaskId = Annotated[str, Path(alias="taskId", min_length=1, max_length=64)]


def _provider(key: str) -> Provider:
    return get_provider(key, provider_settings())


def _webhook_provider(key: str) -> Provider:
    settings = provider_settings()
    return get_provider(key, {key: results.webhook_settings(settings.get(key, {}))})


def _raw_body() -> bytes:
    raw = app.current_event.raw_event.get("body") or ""
    return base64.b64decode(raw) if app.current_event.is_base64_encoded else str(raw).encode("utf-8")


def _receive(provider_key: str, kind: str | None) -> Response[Any]:
    body = _raw_body()
    if len(body) > MAX_PUSH_BYTES:
        return Response(413, content_types.APPLICATION_JSON, error_body(app, "TooLarge", "push body too large"))
    queue_url = WebhookIntakeConfig.from_env().results_queue_url

    def enqueue(message: results.PushMessage) -> None:
        queues.send(queue_url, message)

    receipt = results.receive_push(
        default_store(),
        _webhook_provider(provider_key),
        dict(app.current_event.headers or {}),
        body,
        kind,
        dict(app.current_event.query_string_parameters or {}),
        enqueue,
    )
    metrics.add_metric(name="PushesDuplicate" if receipt.duplicate else "PushesAccepted", unit="Count", value=1)
    return Response(200, content_types.APPLICATION_JSON, {"status": "ok", **receipt.dump()})


@app.post(
    "/webhooks/<provider>",
    tags=["webhooks"],
    summary="A provider push (verified, deduplicated, stored)",
    responses=answers(
        200,
        "Kept (or a duplicate of a kept push)",
        None,
        400,
        401,
        404,
        413,
        422,
        content=PUSH_ANSWER,
        route_key="POST /webhooks/{provider}",
        notes=PUSH_NOTES,
    ),
    openapi_extensions={**OPEN, **limit("POST /webhooks/{provider}")},
)
def push(provider: ProviderName) -> Response[Any]:
    return _receive(provider, None)


@app.post(
    "/webhooks/<provider>/<kind>",
    tags=["webhooks"],
    summary="A provider push of one kind",
    responses=answers(
        200,
        "Kept (or a duplicate of a kept push)",
        None,
        400,
        401,
        404,
        413,
        422,
        content=PUSH_ANSWER,
        route_key="POST /webhooks/{provider}/{kind}",
        notes=PUSH_NOTES,
    ),
    openapi_extensions={**OPEN, **limit("POST /webhooks/{provider}/{kind}")},
)
def push_kind(provider: ProviderName, kind: Kind) -> Response[Any]:
    return _receive(provider, kind)


@app.get(
    "/tasks/<taskId>/calls",
    tags=["calls"],
    summary="A task's call records (oldest first) with filters and paging; format=csv for every call as CSV",
    responses=answers(
        200,
        "A page of calls (JSON), or every call (format=csv)",
        None,
        401,
        404,
        422,
        content={
            content_types.APPLICATION_JSON: {"model": results.CallPage, "examples": {"example": {"value": CALL_PAGE}}},
            "text/csv": {"schema": {"type": "string"}},
        },
    ),
)
def list_calls(
    task_id: TaskId,
    status: Annotated[CallStatus | None, Query()] = None,
    since: Annotated[IsoDateTime | None, Query(description="calls first seen at or after (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response[results.CallPage | str]:
    store = default_store()
    if format == "csv":
        text = results.calls_csv(store, task_id, status=status, since=since)
        headers = {"Content-Disposition": f'attachment; filename="calls-{task_id}.csv"'}
        return Response(200, "text/csv; charset=utf-8", text, headers=headers)
    page = results.list_calls(store, task_id, status=status, since=since, limit=limit, next_token=next_token)
    return Response(200, content_types.APPLICATION_JSON, page)


@tracer.capture_method
def on_result(record: SQSRecord) -> None:
    # imported here: meetings, tasks (and phone-number parsing) are only needed to apply a kept push
    from outcall import conferences, tasks

    def on_lifecycle(event: TaskLifecycleEvent) -> None:
        conferences.on_lifecycle(event)  # a meeting began, ended or moved (quanshi)
        tasks.on_lifecycle(event)  # a provider finished one of its tasks

    message = results.PushMessage.model_validate_json(record.body)
    outcome = results.process_push(default_store(), _provider, message, on_lifecycle)
    _request_dispatch(outcome.ended_tasks)
    logger.info("push processed", extra={"pushId": message.push_id, **outcome.dump()})


def _request_dispatch(task_ids: list[str]) -> None:
    """Contacts of these tasks finished an attempt: their dispatchers have room for more."""
    if task_ids:
        from outcall.dispatch import request_dispatch

        for task_id in task_ids:
            request_dispatch(task_id, "results")


def on_results(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    """An SQS batch of kept pushes: each record applied by on_result, partial batch failures."""
    # imported here: Powertools batch loads every parser model (~25 ms) that an HTTP push never needs
    from aws_lambda_powertools.utilities.batch import process_partial_response

    return process_partial_response(
        event=event, record_handler=on_result, processor=queues.sqs_batch_processor(), context=context
    )


def on_schedule(event: Mapping[str, Any]) -> dict[str, Any]:
    """The rate schedule of template.yaml: {"kind": "poll-results"}."""
    if event.get("kind") != "poll-results":
        logger.warning("unknown schedule input", extra={"kind": event.get("kind")})
        return {"polled": 0}
    outcomes = results.poll_all(default_store(), provider_settings(), _provider)
    _request_dispatch(sorted({t for o in outcomes for t in o.ended_tasks}))
    events = sum(o.events for o in outcomes)
    metrics.add_metric(name="PolledEvents", unit="Count", value=events)
    return {"polled": len(outcomes), "events": events, "providers": [o.dump() for o in outcomes]}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    if "requestContext" in event:
        return resolve(app, event, context)
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        return on_results(event, context)
    return on_schedule(event)
