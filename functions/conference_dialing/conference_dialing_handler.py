"""conference_dialing: meetings and their callees; target of the pre-meeting dialing schedules.

Thin: each route parses its request (Powertools validation, pydantic models), calls one method of
outcall.conferences.ConferenceService and returns its model."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall import examples
from outcall.api import BODY_ERRORS, answers, configure, json_body, limit, request_examples, resolve
from outcall.conferences import (
    AddCallsAnswer,
    AddCallsRequest,
    ConferenceDialEvent,
    ConferenceService,
    MeetingView,
    PutMeetingRequest,
)
from outcall.config import provider_settings
from outcall.observability import logger, metrics, tracer
from outcall.providers import get_provider
from outcall.providers.base import Provider
from outcall.schedules import ConferenceSchedules
from outcall.store import default_store, utcnow

app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=json_body)
configure(app)

EventId = Annotated[str, Path(alias="eventId", pattern=r"^[A-Za-z0-9_-]{1,40}$")]


def clock() -> datetime:
    """Now; tests replace it to control time."""
    return utcnow()


def _provider(key: str) -> Provider:
    return get_provider(key, provider_settings())


def service() -> ConferenceService:
    return ConferenceService(default_store(), _provider, ConferenceSchedules(), clock=lambda: clock())


def _request_id() -> str:
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        return str(app.current_event.request_context.request_id or "")
    return ""


@app.put(
    "/events/<eventId>",
    tags=["conferences"],
    summary="Register or change a meeting; a new startTime moves every dialing schedule",
    responses={
        **answers(
            200,
            "Changed",
            MeetingView,
            401,
            409,
            502,
            *BODY_ERRORS,
            example=examples.MEETING,
            route_key="PUT /events/{eventId}",
        ),
        **answers(201, "Registered", MeetingView, example=examples.MEETING),
    },
    openapi_extensions=limit("PUT /events/{eventId}"),
)
def put_event(
    event_id: EventId,
    request: Annotated[PutMeetingRequest, Body(openapi_examples=request_examples(meeting=examples.PUT_MEETING))],
) -> Response[MeetingView]:
    view, created = service().put(event_id, request)
    return Response(201 if created else 200, content_types.APPLICATION_JSON, view)


@app.get(
    "/events/<eventId>",
    tags=["conferences"],
    summary="A meeting: callees with dial state and result, schedules",
    responses=answers(200, "The meeting", MeetingView, 401, 404, 422, example=examples.MEETING),
)
def get_event(event_id: EventId) -> MeetingView:
    return service().view(event_id)


@app.delete(
    "/events/<eventId>",
    tags=["conferences"],
    summary="Cancel a meeting and remove its schedules",
    responses=answers(204, "Canceled (no body)", None, 401, 404, 409, 422, 502),
)
def delete_event(event_id: EventId) -> Response[str]:
    service().cancel(event_id)
    return Response(204, body="")  # no body, not the JSON null


@app.post(
    "/events/<eventId>/calls",
    tags=["conferences"],
    summary="Add callees (Quanshi event/call/add shape): scheduled before the start, or dialled now",
    responses=answers(
        200,
        "Quanshi's answer shape: callees scheduled (callType 1) or dialled now (2)",
        AddCallsAnswer,
        401,
        404,
        409,
        502,
        *BODY_ERRORS,
        example=examples.QUANSHI_ADD_CALLS_ANSWER,
        route_key="POST /events/{eventId}/calls",
        notes={409: "The meeting has ended or was canceled"},
    ),
    openapi_extensions=limit("POST /events/{eventId}/calls"),
)
def add_calls(
    event_id: EventId,
    request: Annotated[
        AddCallsRequest, Body(openapi_examples=request_examples(quanshi_event_call_add=examples.QUANSHI_ADD_CALLS))
    ],
) -> AddCallsAnswer:
    answer = service().add_calls(event_id, request, _request_id())
    metrics.add_metric(name="ConferenceCalleesAdded", unit="Count", value=len(request.call_list))
    return answer


def on_schedule(event: dict[str, Any]) -> dict[str, Any]:
    """A dialing schedule firing: {"kind": "conference-dial", "eventId", "revision", "dueAt"}."""
    fired = ConferenceDialEvent.model_validate(event)
    logger.info("schedule fired", extra={"eventId": fired.event_id, "revision": fired.revision})
    return service().fire(fired).dump()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return resolve(app, event, context)
    return on_schedule(event)
