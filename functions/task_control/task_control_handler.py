"""task_control: outbound dialing tasks. HTTP routes, the auto start/stop schedules and the dispatcher.

Thin: each route parses its request (Powertools validation, pydantic models), calls one
method of outcall.tasks.TaskService and returns its model. The dispatcher (outcall.dispatch) runs
here too: on start and resume (in the request), on messages of the dispatch queue (after call
results and imports, partial batch failures) and on the rate schedule `dispatch-running`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from outcall import examples, queues
from outcall.api import BODY_ERRORS, answers, configure, json_body, limit, request_examples, resolve
from outcall.compliance import EXAMPLE_FORECAST, Forecast, forecast
from outcall.config import TaskControlConfig, provider_settings
from outcall.dispatch import (
    MAX_RELEASES_PER_RUN,
    START_RUN_SECONDS,
    Dispatcher,
    DispatchMessage,
    request_dispatch,
)
from outcall.dnc import (
    EXAMPLE_ADD,
    EXAMPLE_ADDED,
    EXAMPLE_ENTRY,
    EXAMPLE_PAGE,
    AddDncRequest,
    DncAdded,
    DncEntry,
    DncPage,
    DncService,
    request_withdrawals,
)
from outcall.dnc_uploads import (
    EXAMPLE_IMPORT,
    EXAMPLE_TICKET,
    EXAMPLE_UPLOAD,
    DncImport,
    DncUploadRequest,
    DncUploads,
    DncUploadTicket,
)
from outcall.engine import Engine, build_engine
from outcall.idempotency import once_per_key
from outcall.models import ProviderKey, Task, TaskStatus
from outcall.observability import logger, metrics, tracer
from outcall.providers import get_provider
from outcall.providers.base import Provider
from outcall.schedules import TaskSchedules
from outcall.store import default_store, utcnow
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

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=json_body)
configure(app)

TaskId = Annotated[str, Path(alias="taskId", min_length=1, max_length=64)]
Number = Annotated[str, Path(alias="number", min_length=1, max_length=40, description="E.164, with or without +")]
Limit = Annotated[int, Query(ge=1, le=1000)]
NextToken = Annotated[str | None, Query(alias="nextToken", max_length=2048)]


def _provider(key: str) -> Provider:
    return get_provider(key, provider_settings())


def _copy_contacts(source_task_id: str, task_id: str) -> str:
    """A clone's contacts are copied by an import (the contact_import function works it)."""
    from outcall.bucket import CallListBucket
    from outcall.imports import Importer, ImportMessage

    config = TaskControlConfig.from_env()

    def send(message: ImportMessage) -> None:
        queues.send(config.import_queue_url, message)

    importer = Importer(default_store(), CallListBucket(config.bucket_name), _provider, send)
    return importer.clone_contacts(source_task_id, task_id).import_id


def engine() -> Engine:
    return build_engine(
        default_store(), _provider, schedules=TaskSchedules(), copy_contacts=_copy_contacts, dispatch=_dispatch_now
    )


def dispatcher() -> Dispatcher:
    return engine().dispatcher


def _dispatch_now(task_id: str) -> None:
    """The first waves at once (start, resume), for START_RUN_SECONDS at most; a run that found the
    account busy, ran out of that time or has more to release than one run takes, carries on from the
    dispatch queue."""
    outcome = dispatcher().run(task_id, seconds=START_RUN_SECONDS)
    if outcome.status == "busy" or outcome.time_up or outcome.released + outcome.resent >= MAX_RELEASES_PER_RUN:
        request_dispatch(task_id, outcome.status)


def service() -> TaskService:
    return engine().tasks


def _create_once(idempotency_key: str, request: CreateTaskRequest) -> Task:
    """One provider call per Idempotency-Key (outcall.idempotency): a retry with the same key and
    body answers the first result."""

    def create(body: Mapping[str, Any]) -> dict[str, Any]:
        return service().create(CreateTaskRequest.model_validate(body)).dump()

    return Task.model_validate(once_per_key("tasks", idempotency_key, request.dump(), create, app.lambda_context))


@app.post(
    "/tasks",
    tags=["tasks"],
    summary="Create a task at its provider",
    responses=answers(
        201,
        "Created at the provider and here",
        Task,
        401,
        409,
        502,
        *BODY_ERRORS,
        example=examples.TASK,
        route_key="POST /tasks",
        notes={409: "The provider account holds 100 tasks (see autoDelete), or this Idempotency-Key is in use"},
    ),
    openapi_extensions=limit("POST /tasks"),
)
def create_task(
    request: Annotated[CreateTaskRequest, Body(openapi_examples=request_examples(robot_task=examples.CREATE_TASK))],
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


@app.get(
    "/tasks",
    tags=["tasks"],
    summary="List tasks, newest first, with filters and paging",
    responses=answers(200, "A page of tasks", TaskPage, 401, 422, example=examples.TASK_PAGE),
)
def list_tasks(
    status: Annotated[TaskStatus | None, Query()] = None,
    provider: Annotated[ProviderKey | None, Query()] = None,
    name: Annotated[str | None, Query(description="name prefix", max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> TaskPage:
    return service().list(status=status, provider=provider, name_prefix=name, limit=limit, next_token=next_token)


@app.get(
    "/tasks/<taskId>",
    tags=["tasks"],
    summary="One task with its contact and call counts",
    responses=answers(200, "The task", TaskDetail, 401, 404, 422, example=examples.TASK_DETAIL),
)
def get_task(task_id: TaskId) -> TaskDetail:
    return service().detail(task_id)


@app.patch(
    "/tasks/<taskId>",
    tags=["tasks"],
    summary="Change a ready or paused task's name or settings",
    responses=answers(
        200,
        "Changed at the provider and here",
        Task,
        401,
        404,
        409,
        502,
        *BODY_ERRORS,
        example=examples.TASK,
        route_key="PATCH /tasks/{taskId}",
        notes={409: "The task is neither ready nor paused, or changed at the same time"},
    ),
    openapi_extensions=limit("PATCH /tasks/{taskId}"),
)
def update_task(
    task_id: TaskId,
    request: Annotated[UpdateTaskRequest, Body(openapi_examples=request_examples(rename=examples.UPDATE_TASK))],
) -> Task:
    return service().update(task_id, request)


@app.delete(
    "/tasks/<taskId>",
    tags=["tasks"],
    summary="Delete at the provider and here; call records stay",
    responses=answers(204, "Deleted (no body)", None, 401, 404, 409, 422, 502),
)
def delete_task(task_id: TaskId) -> Response[str]:
    service().delete(task_id)
    return Response(204, body="")  # no body, not the JSON null


TRANSITION_ANSWERS = answers(
    200,
    "The task in its new status",
    Task,
    401,
    404,
    409,
    422,
    502,
    example=examples.TASK,
    notes={409: "Not allowed from the task's status (see the README's table), or claimed at the same time"},
)


def _transition_route(action: Literal["start", "pause", "stop"], summary: str) -> None:
    """`POST /tasks/{taskId}/<action>`: one route per lifecycle command (README "Task lifecycle")."""

    def route(task_id: TaskId) -> Task:
        return service().transition(task_id, action)

    route.__name__ = route.__qualname__ = f"{action}_task"
    app.post(f"/tasks/<taskId>/{action}", tags=["tasks"], summary=summary, responses=TRANSITION_ANSWERS)(route)


_transition_route("start", "Start (or resume) a task; 409 when not allowed")
_transition_route("pause", "Pause a running task; 409 when not allowed")
_transition_route("stop", "Stop a task for good; 409 when not allowed")


@app.post(
    "/tasks/<taskId>/clone",
    tags=["tasks"],
    summary="A new task with this task's settings",
    responses=answers(
        201,
        "The new task (and the import copying its contacts)",
        CloneResult,
        401,
        404,
        409,
        502,
        *BODY_ERRORS,
        example=examples.CLONE_RESULT,
        route_key="POST /tasks/{taskId}/clone",
    ),
    openapi_extensions=limit("POST /tasks/{taskId}/clone"),
)
def clone_task(
    task_id: TaskId,
    request: Annotated[
        CloneTaskRequest | None, Body(openapi_examples=request_examples(with_contacts=examples.CLONE_TASK))
    ] = None,
) -> Response[CloneResult]:
    result = service().clone(task_id, request or CloneTaskRequest.model_validate({}))
    return Response(201, content_types.APPLICATION_JSON, result)


# ---------------------------------------------------------------- do-not-call lists and the forecast


def _listed(task_id: str | None) -> None:
    request_withdrawals(default_store(), task_id)


def dnc() -> DncService:
    return DncService(default_store(), on_listed=_listed)


def dnc_uploads() -> DncUploads:
    from outcall.bucket import CallListBucket

    return DncUploads(default_store(), CallListBucket(TaskControlConfig.from_env().bucket_name), on_listed=_listed)


ImportId = Annotated[str, Path(alias="importId", min_length=1, max_length=64)]
TASK_EXAMPLE_ID = "tsk_0123456789abcdef01234567"
UPLOAD_NOTES = {
    422: "A field is invalid (`errors` names it): a file name that is not .csv/.txt/.xlsx/.xlsm, an "
    "expiresAt without an offset or in the past"
}


@app.post(
    "/dnc/uploads",
    tags=["compliance"],
    summary="A presigned PUT for a CSV or XLSX do-not-call list; the upload lists its numbers on the account's list",
    responses=answers(
        201,
        "The upload (waiting for its file) and how to PUT the file",
        DncUploadTicket,
        401,
        *BODY_ERRORS,
        example=EXAMPLE_TICKET,
        route_key="POST /dnc/uploads",
        notes=UPLOAD_NOTES,
    ),
    openapi_extensions=limit("POST /dnc/uploads"),
)
def create_dnc_upload(
    request: Annotated[DncUploadRequest, Body(openapi_examples=request_examples(csv=EXAMPLE_UPLOAD))],
) -> Response[DncUploadTicket]:
    return Response(201, content_types.APPLICATION_JSON, dnc_uploads().create_upload(request))


@app.get(
    "/dnc/uploads/<importId>",
    tags=["compliance"],
    summary="A do-not-call upload's status and its counts per outcome",
    responses=answers(200, "The upload", DncImport, 401, 404, 422, example=EXAMPLE_IMPORT),
)
def get_dnc_upload(import_id: ImportId) -> DncImport:
    return dnc_uploads().get(import_id)


@app.post(
    "/tasks/<taskId>/dnc/uploads",
    tags=["compliance"],
    summary="A presigned PUT for a CSV or XLSX do-not-call list; the upload lists its numbers on the task's list",
    responses=answers(
        201,
        "The upload (waiting for its file) and how to PUT the file",
        DncUploadTicket,
        401,
        404,
        *BODY_ERRORS,
        example=EXAMPLE_TICKET,
        route_key="POST /tasks/{taskId}/dnc/uploads",
        notes=UPLOAD_NOTES,
    ),
    openapi_extensions=limit("POST /tasks/{taskId}/dnc/uploads"),
)
def create_task_dnc_upload(
    task_id: TaskId,
    request: Annotated[DncUploadRequest, Body(openapi_examples=request_examples(csv=EXAMPLE_UPLOAD))],
) -> Response[DncUploadTicket]:
    return Response(201, content_types.APPLICATION_JSON, dnc_uploads().create_upload(request, task_id))


@app.get(
    "/tasks/<taskId>/dnc/uploads/<importId>",
    tags=["compliance"],
    summary="A do-not-call upload of the task's list: status and counts per outcome",
    responses=answers(
        200,
        "The upload",
        DncImport,
        401,
        404,
        422,
        example={**EXAMPLE_IMPORT, "scope": "task", "taskId": TASK_EXAMPLE_ID},
        notes={404: "No such task, or no such upload of its list"},
    ),
)
def get_task_dnc_upload(task_id: TaskId, import_id: ImportId) -> DncImport:
    return dnc_uploads().get(import_id, task_id)


@app.post(
    "/dnc",
    tags=["compliance"],
    summary="Put numbers on the account's do-not-call list (at most 1,000)",
    responses=answers(201, "Listed", DncAdded, 401, *BODY_ERRORS, example=EXAMPLE_ADDED, route_key="POST /dnc"),
    openapi_extensions=limit("POST /dnc"),
)
def add_dnc(
    request: Annotated[AddDncRequest, Body(openapi_examples=request_examples(list_numbers=EXAMPLE_ADD))],
) -> Response[DncAdded]:
    return Response(201, content_types.APPLICATION_JSON, dnc().add(request))


@app.get(
    "/dnc",
    tags=["compliance"],
    summary="The account's do-not-call list, paged",
    responses=answers(200, "A page of entries", DncPage, 401, 422, example=EXAMPLE_PAGE),
)
def list_dnc(limit: Limit = 100, next_token: NextToken = None) -> DncPage:
    return dnc().page(limit=limit, next_token=next_token)


@app.get(
    "/dnc/<number>",
    tags=["compliance"],
    summary="One number's entry on the account's list",
    responses=answers(
        200, "The entry", DncEntry, 401, 404, 422, example=EXAMPLE_ENTRY, notes={404: "The number is not on the list"}
    ),
)
def get_dnc(number: Number) -> DncEntry:
    return dnc().get(number)


@app.delete(
    "/dnc/<number>",
    tags=["compliance"],
    summary="Take a number off the account's list",
    responses=answers(204, "Removed (no body)", None, 401, 404, 422),
)
def delete_dnc(number: Number) -> Response[str]:
    dnc().delete(number)
    return Response(204, body="")


@app.post(
    "/tasks/<taskId>/dnc",
    tags=["compliance"],
    summary="Put numbers on the task's do-not-call list (at most 1,000)",
    responses=answers(
        201,
        "Listed",
        DncAdded,
        401,
        404,
        *BODY_ERRORS,
        example={**EXAMPLE_ADDED, "scope": "task", "taskId": "tsk_0123456789abcdef01234567"},
        route_key="POST /tasks/{taskId}/dnc",
    ),
    openapi_extensions=limit("POST /tasks/{taskId}/dnc"),
)
def add_task_dnc(
    task_id: TaskId,
    request: Annotated[AddDncRequest, Body(openapi_examples=request_examples(list_numbers=EXAMPLE_ADD))],
) -> Response[DncAdded]:
    return Response(201, content_types.APPLICATION_JSON, dnc().add(request, task_id))


@app.get(
    "/tasks/<taskId>/dnc",
    tags=["compliance"],
    summary="The task's do-not-call list, paged",
    responses=answers(200, "A page of entries", DncPage, 401, 404, 422, example=EXAMPLE_PAGE),
)
def list_task_dnc(task_id: TaskId, limit: Limit = 100, next_token: NextToken = None) -> DncPage:
    return dnc().page(task_id, limit=limit, next_token=next_token)


@app.get(
    "/tasks/<taskId>/dnc/<number>",
    tags=["compliance"],
    summary="One number's entry on the task's list",
    responses=answers(
        200,
        "The entry",
        DncEntry,
        401,
        404,
        422,
        example={**EXAMPLE_ENTRY, "scope": "task", "taskId": "tsk_0123456789abcdef01234567"},
        notes={404: "No such task, or not on its list"},
    ),
)
def get_task_dnc(task_id: TaskId, number: Number) -> DncEntry:
    return dnc().get(number, task_id)


@app.delete(
    "/tasks/<taskId>/dnc/<number>",
    tags=["compliance"],
    summary="Take a number off the task's list",
    responses=answers(204, "Removed (no body)", None, 401, 404, 422),
)
def delete_task_dnc(task_id: TaskId, number: Number) -> Response[str]:
    dnc().delete(number, task_id)
    return Response(204, body="")


@app.get(
    "/tasks/<taskId>/forecast",
    tags=["compliance"],
    summary="Queued contacts callable now, when the others become callable, and those that would be skipped",
    responses=answers(200, "The forecast", Forecast, 401, 404, 422, example=EXAMPLE_FORECAST),
)
def get_forecast(task_id: TaskId) -> Forecast:
    return forecast(default_store(), task_id, utcnow())


class DispatchBusy(Exception):
    """The provider account's dispatcher lease is held by another run: the message comes back."""


@tracer.capture_method
def on_dispatch(record: SQSRecord) -> None:
    message = DispatchMessage.model_validate_json(record.body)
    outcome = dispatcher().run(message.task_id)
    if outcome.status == "busy":
        raise DispatchBusy(f"dispatcher of task {message.task_id} busy; tried again")
    if outcome.released + outcome.resent >= MAX_RELEASES_PER_RUN:
        request_dispatch(message.task_id, "more to release")


def on_dispatch_batch(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    from aws_lambda_powertools.utilities.batch import process_partial_response

    return process_partial_response(
        event=event, record_handler=on_dispatch, processor=queues.sqs_batch_processor(), context=context
    )


def dispatch_running() -> dict[str, Any]:
    """The rate schedule: a dispatcher run for every running task (retries come due, lost answers are
    sent again, idle tasks complete)."""
    store = default_store()
    token: str | None = None
    queued = 0
    while True:
        tasks, token = store.list_tasks(status="running", limit=100, next_token=token)
        for task in tasks:
            request_dispatch(task.task_id, "schedule")
            queued += 1
        if token is None:
            return {"dispatchRequested": queued}


def on_schedule(event: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge Scheduler firing: {"kind": "task-auto", "taskId", "action": "start"|"stop", "version"},
    or the rate schedule {"kind": "dispatch-running"}."""
    if event.get("kind") == "dispatch-running":
        return dispatch_running()
    schedule = ScheduleEvent.model_validate(event)
    logger.info("schedule fired", extra={"taskId": schedule.task_id, "action": schedule.action})
    outcome: ScheduleOutcome = service().on_schedule(schedule)
    return outcome.dump()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return resolve(app, event, context)
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        return dict(on_dispatch_batch(event, context))
    return on_schedule(event)
