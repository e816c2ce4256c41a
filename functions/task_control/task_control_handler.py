"""task_control: outbound dialing tasks. HTTP routes and the auto start/stop schedules.

Thin: each route parses its request (Powertools validation, pydantic models), calls one
method of outcall.tasks.TaskService and returns its model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall import queues
from outcall.api import configure, read_json
from outcall.config import Config, provider_settings
from outcall.idempotency import once_per_key
from outcall.models import ProviderKey, Task, TaskStatus
from outcall.observability import logger, metrics, tracer
from outcall.providers import get_provider
from outcall.providers.base import Provider
from outcall.schedules import TaskSchedules
from outcall.store import default_store
from outcall.tasks import (
    CloneResult,
    CloneTaskRequest,
    CreateTaskRequest,
    ScheduleEvent,
    ScheduleOutcome,
    TaskDetail,
    TaskPage,
    TaskService,
    UpdateTaskRequest,
)

app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=read_json)
configure(app)

TaskId = Annotated[str, Path(alias="taskId", min_length=1, max_length=64)]


def _provider(key: str) -> Provider:
    return get_provider(key, provider_settings())


def _copy_contacts(source_task_id: str, task_id: str) -> str:
    """A clone's contacts are copied by an import (the contact_import function works it)."""
    from outcall.bucket import CallListBucket
    from outcall.imports import Importer, ImportMessage

    config = Config.from_env()

    def send(message: ImportMessage) -> None:
        queues.send(config.import_queue_url, message)

    importer = Importer(default_store(), CallListBucket(config.bucket_name), _provider, send)
    return importer.clone_contacts(source_task_id, task_id).import_id


def service() -> TaskService:
    return TaskService(default_store(), _provider, TaskSchedules(), _copy_contacts)


def _create_once(idempotency_key: str, request: CreateTaskRequest) -> Task:
    """One provider call per Idempotency-Key (outcall.idempotency): a retry with the same key and
    body answers the first result."""

    def create(body: Mapping[str, Any]) -> dict[str, Any]:
        return service().create(CreateTaskRequest.model_validate(body)).dump()

    return Task.model_validate(once_per_key("tasks", idempotency_key, request.dump(), create, app.lambda_context))


@app.post(
    "/tasks", tags=["tasks"], summary="Create a task at its provider", responses={201: {"description": "created"}}
)
def create_task(
    request: Annotated[CreateTaskRequest, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=128,
            description="a retry with the same key and body creates nothing new and answers the first result",
        ),
    ] = None,
) -> Response[Task]:
    task = _create_once(idempotency_key, request) if idempotency_key else service().create(request)
    metrics.add_metric(name="TasksCreated", unit="Count", value=1)
    return Response(201, content_types.APPLICATION_JSON, task)


@app.get("/tasks", tags=["tasks"], summary="List tasks, newest first, with filters and paging")
def list_tasks(
    status: Annotated[TaskStatus | None, Query()] = None,
    provider: Annotated[ProviderKey | None, Query()] = None,
    name: Annotated[str | None, Query(description="name prefix", max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> TaskPage:
    return service().list(status=status, provider=provider, name_prefix=name, limit=limit, next_token=next_token)


@app.get("/tasks/<taskId>", tags=["tasks"], summary="One task with its contact and call counts")
def get_task(task_id: TaskId) -> TaskDetail:
    return service().detail(task_id)


@app.patch("/tasks/<taskId>", tags=["tasks"], summary="Change a ready or paused task's name or settings")
def update_task(task_id: TaskId, request: Annotated[UpdateTaskRequest, Body()]) -> Task:
    return service().update(task_id, request)


@app.delete("/tasks/<taskId>", tags=["tasks"], summary="Delete at the provider and here; call records stay")
def delete_task(task_id: TaskId) -> Response[None]:
    service().delete(task_id)
    return Response(204, content_types.APPLICATION_JSON, None)


@app.post("/tasks/<taskId>/start", tags=["tasks"], summary="Start (or resume) a task; 409 when not allowed")
def start_task(task_id: TaskId) -> Task:
    return service().transition(task_id, "start")


@app.post("/tasks/<taskId>/pause", tags=["tasks"], summary="Pause a running task; 409 when not allowed")
def pause_task(task_id: TaskId) -> Task:
    return service().transition(task_id, "pause")


@app.post("/tasks/<taskId>/stop", tags=["tasks"], summary="Stop a task for good; 409 when not allowed")
def stop_task(task_id: TaskId) -> Task:
    return service().transition(task_id, "stop")


@app.post("/tasks/<taskId>/clone", tags=["tasks"], summary="A new task with this task's settings")
def clone_task(task_id: TaskId, request: Annotated[CloneTaskRequest | None, Body()] = None) -> Response[CloneResult]:
    result = service().clone(task_id, request or CloneTaskRequest.model_validate({}))
    return Response(201, content_types.APPLICATION_JSON, result)


def on_schedule(event: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge Scheduler firing: {"kind": "task-auto", "taskId", "action": "start"|"stop", "version"}."""
    schedule = ScheduleEvent.model_validate(event)
    logger.info("schedule fired", extra={"taskId": schedule.task_id, "action": schedule.action})
    outcome: ScheduleOutcome = service().on_schedule(schedule)
    return outcome.dump()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return app.resolve(event, context)
    return on_schedule(event)
