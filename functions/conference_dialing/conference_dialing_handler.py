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
from outcall.api import configure, read_json
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

app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=read_json)
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
    responses={201: {"description": "registered"}},
)
def put_event(event_id: EventId, request: Annotated[PutMeetingRequest, Body()]) -> Response[MeetingView]:
    view, created = service().put(event_id, request)
    return Response(201 if created else 200, content_types.APPLICATION_JSON, view)


@app.get("/events/<eventId>", tags=["conferences"], summary="A meeting: callees with dial state and result, schedules")
def get_event(event_id: EventId) -> MeetingView:
    return service().view(event_id)


@app.delete("/events/<eventId>", tags=["conferences"], summary="Cancel a meeting and remove its schedules")
def delete_event(event_id: EventId) -> Response[None]:
    service().cancel(event_id)
    return Response(204, content_types.APPLICATION_JSON, None)


@app.post(
    "/events/<eventId>/calls",
    tags=["conferences"],
    summary="Add callees (Quanshi event/call/add shape): scheduled before the start, or dialled now",
)
def add_calls(event_id: EventId, request: Annotated[AddCallsRequest, Body()]) -> AddCallsAnswer:
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
        return app.resolve(event, context)
    return on_schedule(event)
