"""Task control: outbound dialing tasks, their lifecycle, limits and auto start/stop.

Business rules only. A TaskService receives a Store, a provider factory (provider key ->
Provider) and the task schedules; it never talks to AWS or a provider's HTTP API itself.

Lifecycle (README "Task lifecycle"): every change of state is an action looked up in
TRANSITIONS; an action not allowed from the task's status is a Conflict (409) and changes
nothing. An action that needs the provider first *claims* the task (a conditional write on its
`version`, see store.py): of two identical requests at once only one wins the claim and calls
the provider, the other gets 409. A provider failure releases the claim, so the task keeps its
previous state, and the ProviderError (502, with the provider's reason) reaches the caller.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from outcall import limits
from outcall.compliance import validate_settings as validate_compliance
from outcall.errors import Conflict, NotFound, NotSupported, ProviderError, Unprocessable
from outcall.models import (
    CallerId,
    CallingWindow,
    CompliancePolicy,
    InputModel,
    Model,
    ProviderKey,
    ProviderOptions,
    RetryStrategy,
    Task,
    TaskLifecycleEvent,
    TaskSettings,
    TaskStatus,
    TaskType,
)
from outcall.observability import logger
from outcall.providers.aliyun_rules import check_retry_strategy
from outcall.providers.base import Provider, TaskSpec
from outcall.store import Store, utcnow

Action = Literal["start", "pause", "stop", "complete", "fail"]
ScheduleAction = Literal["start", "stop"]

# action -> {from status: to status}; anything else is 409
TRANSITIONS: dict[str, dict[str, TaskStatus]] = {
    "start": {"ready": "running", "paused": "running"},
    "pause": {"running": "paused"},
    "stop": {"ready": "stopped", "running": "stopped", "paused": "stopped"},
    "complete": {"running": "completed", "paused": "completed"},  # reported by call results
    "fail": {"ready": "failed", "running": "failed", "paused": "failed"},  # reported by call results
}
FINAL_STATUSES: frozenset[str] = frozenset({"stopped", "completed", "failed"})
# a provider's word for a task it finished -> the action that follows it here
PROVIDER_FINISHED: dict[str, Action] = {"completed": "complete", "finished": "complete", "failed": "fail"}
EDITABLE_STATUSES: frozenset[str] = frozenset({"ready", "paused"})
DEFAULT_MAX_TASKS = 100

ProviderFactory = Callable[[str], Provider]


class Schedules(Protocol):
    def put(self, task_id: str, action: str, when: datetime, version: int) -> str: ...

    def remove(self, task_id: str, action: str) -> bool: ...


# ---------------------------------------------------------------- API models


class CreateTaskRequest(InputModel):
    name: str = Field(min_length=1, max_length=limits.TASK_NAME_CHARS)
    provider: ProviderKey
    type: TaskType = "auto"
    settings: TaskSettings = Field(default_factory=lambda: TaskSettings.model_validate({}))
    auto_delete: StrictBool = Field(
        False, description="when the provider account holds 100 tasks, delete its oldest completed task to make room"
    )


class TaskSettingsPatch(InputModel):
    """Only the fields given change; `null` clears an optional one."""

    caller_ids: list[CallerId] | None = Field(None, max_length=limits.MAX_CALLER_IDS)
    concurrency: int | None = Field(None, ge=1, le=1000)
    ring_timeout_seconds: int | None = Field(None, ge=5, le=120)
    retry: RetryStrategy | None = None
    calling_window: CallingWindow | None = None
    compliance: CompliancePolicy | None = None
    auto_start_at: datetime | None = None
    auto_stop_at: datetime | None = None
    provider_options: ProviderOptions | None = None


class UpdateTaskRequest(InputModel):
    name: str | None = Field(None, min_length=1, max_length=limits.TASK_NAME_CHARS)
    settings: TaskSettingsPatch | None = None


class CloneTaskRequest(InputModel):
    name: str | None = Field(None, min_length=1, max_length=limits.TASK_NAME_CHARS)
    with_contacts: StrictBool = False


class TaskCounts(Model):
    contacts: dict[str, int] = Field(default_factory=dict, description="contacts by status")
    calls: dict[str, int] = Field(default_factory=dict, description="calls by outcome")
    outcomes: dict[str, int] = Field(
        default_factory=dict, description="contacts by the outcome of their latest finished call"
    )


class HopperView(Model):
    """The dialing engine for this task: what waits, what the provider holds, what ended."""

    queued: int = Field(0, description="contacts waiting to be released (due now or later)")
    released: int = Field(0, description="contacts at the provider whose call has not ended")
    done: dict[str, int] = Field(default_factory=dict, description="contacts done, by the outcome of their last call")
    skipped: int = Field(0, description="contacts never released (the provider refused them, or a do-not-call list)")
    hopper_level: int = Field(description="at most this many released and not finished")
    release_mode: str
    next_release_at: datetime | None = Field(
        None, description="when the next queued contact is due (null: nothing queued)"
    )


class TaskDetail(Task):
    counts: TaskCounts = Field(default_factory=TaskCounts)
    hopper: HopperView | None = None


class TaskPage(Model):
    items: list[Task]
    next_token: str | None = None


class CloneResult(Model):
    task: Task
    contacts_import_id: str | None = Field(
        default=None, description="the import copying the contacts (GET /imports/{importId} shows its progress)"
    )
    note: str | None = None


class ScheduleEvent(Model):
    kind: Literal["task-auto"]
    task_id: str
    action: ScheduleAction
    version: int | None = None


class ScheduleOutcome(Model):
    handled: bool
    reason: str
    task_id: str
    status: str | None = None


# ---------------------------------------------------------------- providerOptions, per provider


# Option names (compared without case, '_' or '-') that point a provider's pushes somewhere: the
# callback URLs are outcall's own (its /webhooks routes), never the caller's.
OWNED_OPTION_WORDS: Final = ("callback", "webhook", "notifyurl", "hookurl")


def _option_key(name: str) -> str:
    return name.replace("_", "").replace("-", "").casefold()


def owned_option_paths(options: Any, owned: Iterable[str] = ()) -> list[str]:
    """The paths (a.b.c) of providerOptions fields outcall owns: any callback/webhook URL field, and
    the names in `owned` (a provider's own: the ids outcall gives its tasks and contacts), at any depth."""
    names = {_option_key(n) for n in owned}
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", options)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Mapping):
            for key, child in value.items():
                child_path = f"{path}.{key}" if path else str(key)
                normal = _option_key(str(key))
                if normal in names or any(word in normal for word in OWNED_OPTION_WORDS):
                    found.append(child_path)
                else:
                    stack.append((child_path, child))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}", child) for i, child in enumerate(value))
    return sorted(found)


class _Options(BaseModel):
    """Every provider's providerOptions model. `owned` lists the provider's fields outcall sets
    itself (ids it gives the provider); callback and webhook URL fields are refused for every provider."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)
    owned: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _refuse_owned_fields(cls, data: Any) -> Any:
        paths = owned_option_paths(data, cls.owned)
        if paths:
            raise ValueError(
                f"{', '.join(p[:64] for p in paths[:5])}: set by outcall (callback URLs and the ids outcall "
                "gives the provider cannot be overridden)"
            )
        return data


class _Documented(_Options):
    """providerOptions checked against a provider's document: only its own field names (an unknown
    one is a 422 naming it), documented ranges and enumerations; fields outcall owns are refused
    (callback URLs at any depth by _Options, the provider's own ids by `_owned` validators)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


def _owned(value: Any) -> Any:
    if value is not None:
        raise PydanticCustomError("owned_by_outcall", "set by outcall; it cannot be given in providerOptions")
    return value


_Bit = Literal[0, 1]


class AliyunOptions(_Documented):
    """CloudCreateTask's own fields (seeds/aliyun-vms-cloud-create-task.txt; SDK CloudCreateTaskRequest)."""

    EnterpriseId: Any = None
    TaskId: Any = None
    Name: Any = None
    Type: Any = None
    AutoDelete: Any = None
    _outcalls = field_validator("EnterpriseId", "TaskId", "Name", "Type", "AutoDelete", mode="before")(_owned)

    Description: str | None = Field(None, max_length=199)
    TemplateName: str | None = None
    AutoStart: _Bit | None = None
    AutoStartDay: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    AutoStartTime: str | None = Field(None, pattern=r"^\d{2}:\d{2}:\d{2}$")
    AutoStop: _Bit | None = None
    AutoStopDay: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    AutoStopTime: str | None = Field(None, pattern=r"^\d{2}:\d{2}:\d{2}$")
    ForceEndFlag: _Bit | None = None
    AutoTaskType: _Bit | None = None
    AutoTriggerTimeStrategy: str | None = Field(None, validate_default=True)
    AutoComplete: _Bit | None = None
    RetryStrategyTimeType: Literal[1, 2] | None = None
    RetryStrategy: str | dict[str, Any] | list[Any] | None = None
    RetryStrategyOnlyToday: Literal[0, 1, 2, 3] | None = None
    CallPriorityStrategy: str | dict[str, Any] | None = None
    CustomerClidsCategory: Literal[1, 2, 4, 5] | None = None
    CustomerClids: str | None = None
    CustomerClidType: Literal[1, 2] | None = None
    ClidProperty: str | dict[str, Any] | None = None
    CustomerClidWeightFlag: _Bit | None = None
    CustomerClidWeight: str | list[Any] | None = None
    CustomerClidsGroup: str | None = Field(None, validate_default=True)
    CustomerTimeout: int | None = Field(None, ge=5, le=60)
    CallRouteStrategy: Literal[1, 2] | None = None
    IvrId: int | None = None
    IvrName: str | None = None
    Concurrency: int | None = Field(None, ge=0)
    UserFields: str | list[Any] | None = None
    CallVariables: str | list[Any] | None = None
    TimeStrategy: str | None = None
    CallGroupType: Literal[1, 2] | None = None
    Cnos: str | None = Field(None, validate_default=True)
    AgentGroup: str | None = Field(None, validate_default=True)
    CallStrategy: Literal[1, 2, 3, 4, "1", "2", "3", "4"] | None = None
    AgentTimeout: int | None = Field(None, ge=5, le=60)
    Wrapup: int | None = Field(None, ge=1, le=10800)
    MaxWaitTime: int | None = Field(None, ge=10, le=600)
    MinAvailableAgentCount: int | None = Field(None, ge=1, le=10)
    Quotiety: float | None = Field(None, gt=0, le=20)
    PredictAdjust: int | None = Field(None, ge=50, le=400)
    CallLimitStrategy: str | list[Any] | None = None
    CustomerMoh: str | None = None
    CustomerVoice: str | None = None
    AnswerRate: int | None = Field(None, ge=1, le=100)
    WarmUpDuration: int | None = Field(None, ge=60, le=600)
    IsRewarm: _Bit | None = None

    @field_validator("AutoTriggerTimeStrategy")
    @classmethod
    def _interval_needs_periods(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("AutoTaskType") == 1 and not value:
            raise ValueError("needed with AutoTaskType 1 (interval calling)")
        return value

    @field_validator("RetryStrategy")
    @classmethod
    def _rounds_in_order(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        text = value if isinstance(value, str) else json.dumps(value)
        check_retry_strategy(text, int(info.data.get("RetryStrategyTimeType") or 1))
        return value

    @field_validator("CustomerClidsGroup")
    @classmethod
    def _pool_needs_group(cls, value: str | None, info: ValidationInfo) -> str | None:
        category = info.data.get("CustomerClidsCategory")
        if category in (4, 5) and not value:
            raise ValueError(f"needed with CustomerClidsCategory {category} (number pool or caller-id navigation)")
        return value

    @field_validator("CallVariables")
    @classmethod
    def _at_most_five(cls, value: Any) -> Any:
        items = json.loads(value) if isinstance(value, str) else value
        if isinstance(items, list) and len(items) > 5:
            raise ValueError("at most 5 call variables")
        return value

    @field_validator("Cnos")
    @classmethod
    def _agents_need_cnos(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("CallGroupType") == 1 and not value:
            raise ValueError("needed with CallGroupType 1 (agents by number)")
        return value

    @field_validator("AgentGroup")
    @classmethod
    def _groups_need_a_group(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("CallGroupType") == 2 and not value:
            raise ValueError("needed with CallGroupType 2 (an outbound group)")
        return value


class XSwitchOptions(_Documented):
    """The task fields of seeds/xswitch-out-call-tasks.txt (修改基本信息 / 修改呼叫设置 / 修改呼叫确认 /
    修改接通后动作); `group_name` is the task's name and `id` the provider's: outcall sets both."""

    id: Any = None
    group_name: Any = None
    group_id: Any = None
    _outcalls = field_validator("id", "group_name", "group_id", mode="before")(_owned)

    description: str | None = None
    cid_number: str | None = None
    cid_name: str | None = None
    dest_context: str | None = None
    calling_time: int | None = Field(None, ge=1, le=300, description="seconds a callee may ring (超时时长)")
    max_caps: int | None = Field(None, ge=1, le=1000, description="calls started per second (CAPS)")
    max_concurrency: int | None = Field(None, ge=1, le=1000)
    task_start_time: str | None = Field(None, pattern=r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})?$")
    auto_dial: _Bit | None = None
    disable_ring_back: _Bit | None = None
    auto_record: _Bit | None = None
    group_confirm_key: str | None = None
    group_confirm_read_timeout: str | int | None = None
    group_confirm_file: str | dict[str, Any] | None = None
    action: str | None = None
    data: str | dict[str, Any] | None = None


class NxcloudTaskCreateSetting(_Documented):
    """Callbot-API-createTask `taskCreateSetting` (taskName, maxCall, maxRingTime, zoneSecond and the
    dialAt* window come from the task's name and settings; they may be given here to override)."""

    strategyName: str | None = None
    startupType: int | None = Field(None, ge=0)
    startupAt: int | None = Field(None, ge=0, description="epoch seconds")
    zoneSecond: int | None = Field(None, ge=-12 * 3600, le=14 * 3600)
    dialAtWeekDay: str | None = None
    dialAtUpHour: str | None = None
    dialAtDownHour: str | None = None
    maxCall: int | None = Field(None, ge=1, le=1000)
    maxRingTime: int | None = Field(None, ge=5, le=120)
    routeID: str | None = None
    manualCallSetting: dict[str, Any] | None = None
    taskName: Any = None
    taskCallbackUrl: Any = None

    _no_owned = field_validator("taskName", "taskCallbackUrl")(_owned)


class NxcloudFuncFlag(_Documented):
    """Callbot-API-createTask `funcFlag`. roundRedial (NXCLOUD's own redial rounds) is off unless
    turned on here: outcall releases every retry itself."""

    taskKeep: bool | None = None
    roundRedial: bool | None = None
    wholeTTS: bool | None = None
    smsEnable: bool | None = None
    smsFuncFlag: list[dict[str, Any]] | None = None
    phoneEncrypt: bool | None = None


class NxcloudOptions(_Documented):
    """NXCLOUD createTask fields (Callbot-API-createTask), by their documented names."""

    sceneID: str | None = Field(None, min_length=1, description="the script template; required unless configured")
    taskCreateSetting: NxcloudTaskCreateSetting | None = None
    funcFlag: NxcloudFuncFlag | None = None
    other: str | None = None
    productID: Any = None
    userTaskID: Any = None
    taskCallbackUrl: Any = None
    orderCallbackUrl: Any = None
    callCallbackUrl: Any = None

    _no_owned = field_validator("productID", "userTaskID", "taskCallbackUrl", "orderCallbackUrl", "callCallbackUrl")(
        _owned
    )


class AirudderOptions(_Documented):
    """AIRUDDER workflow/createinstance fields (apifox api-45238811), by their documented names; `name`
    and `end_time` come from the task's name and autoStopAt."""

    workflow_template_id: int | None = Field(None, ge=1, description="the workflow template (an integer)")
    workflow_template_name: str | None = None
    auto_finish: int | None = Field(None, ge=0)
    name: Any = None
    end_time: Any = None
    workflow_id: Any = None
    case_id: Any = None

    _no_owned = field_validator("name", "end_time", "workflow_id", "case_id")(_owned)


PROVIDER_OPTIONS: dict[str, type[BaseModel]] = {
    "aliyun": AliyunOptions,
    "xswitch": XSwitchOptions,
    "nxcloud": NxcloudOptions,
    "airudder": AirudderOptions,
}


def validate_provider_options(provider: str, options: Mapping[str, Any]) -> None:
    """Check providerOptions against the provider's documented ranges; 422 naming the field."""
    model = PROVIDER_OPTIONS.get(provider, _Options)
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(["settings.providerOptions", *(str(p) for p in err["loc"])]),
                "message": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors()
        ]
        message = "; ".join(f"{e['field']}: {e['message']} ({provider})" for e in errors)
        raise Unprocessable(message, details=errors) from exc


def _field_error(field: str, message: str) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", details=[{"field": field, "message": message}])


def validate_auto_times(
    settings: TaskSettings, *, changed: set[str] | None = None, now: datetime | None = None
) -> None:
    now = now or utcnow()
    for attr, field in (("auto_start_at", "settings.autoStartAt"), ("auto_stop_at", "settings.autoStopAt")):
        value: datetime | None = getattr(settings, attr)
        if value is None or (changed is not None and attr not in changed):
            continue
        if value.tzinfo is None:
            raise _field_error(field, "give a time zone offset (ISO 8601, e.g. 2030-01-01T09:00:00+08:00)")
        if value <= now:
            raise _field_error(field, "must be in the future")
    if settings.auto_start_at and settings.auto_stop_at and settings.auto_stop_at <= settings.auto_start_at:
        raise _field_error("settings.autoStopAt", "must be after autoStartAt")


def task_spec(task: Task) -> TaskSpec:
    """The task as its provider gets it. Retries are outcall's (dispatch.retry_decision): the provider's
    own redial is asked for only with `settings.providerRedial`."""
    settings = dict(task.settings)
    if not task.settings.provider_redial:
        settings["retry"] = None
    return TaskSpec.model_validate({"name": task.name, "type": task.type, **settings})


def new_task_id() -> str:
    return "tsk_" + secrets.token_hex(12)


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---------------------------------------------------------------- the service


class TaskService:
    def __init__(
        self,
        store: Store,
        providers: ProviderFactory,
        schedules: Schedules | None = None,
        copy_contacts: Callable[[str, str], str] | None = None,
        dispatch: Callable[[str], object] | None = None,
        withdraw: Callable[[Task, Provider], int] | None = None,
        quiet: Callable[[str], AbstractContextManager[object]] | None = None,
    ) -> None:
        """`copy_contacts(source task id, new task id)` starts copying contacts for a clone and
        returns the id of the import doing it; `dispatch(task id)` releases the next wave of a
        running task (dispatch.Dispatcher.run, or a message that has it run); `withdraw(task,
        provider)` cancels at the provider what it holds and has not dialled
        (dispatch.Dispatcher.withdraw); `quiet(provider key)` holds the account's releases while a
        pause or stop tells the provider, after the wave under way (dispatch.Dispatcher.quiet)."""
        self.store = store
        self.providers = providers
        self.schedules = schedules
        self.copy_contacts = copy_contacts
        self.dispatch = dispatch
        self.withdraw = withdraw
        self.quiet = quiet

    # ------------------------------------------------------------ reads
    def get(self, task_id: str) -> Task:
        task = self.store.get_task(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return task

    def detail(self, task_id: str) -> TaskDetail:
        found = self.store.get_task_with_counts(task_id)
        if found is None:
            raise NotFound(f"no task {task_id!r}")
        task, counts = found
        from outcall.dispatch import hopper_level

        contacts = counts.get("contacts", {})
        due = self.store.next_due(task_id)
        hopper = HopperView(
            queued=max(0, int(contacts.get("queued", 0))),
            released=self.store.count_inflight(task.provider, task_id),
            done={k: int(v) for k, v in counts.get("outcomes", {}).items() if int(v) > 0},
            skipped=int(contacts.get("skipped", 0)),
            hopper_level=hopper_level(task),
            release_mode=task.settings.release_mode,
            next_release_at=datetime.fromisoformat(due) if due else None,
        )
        return TaskDetail.model_validate({**dict(task), "counts": TaskCounts.model_validate(counts), "hopper": hopper})

    def list(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        name_prefix: str | None = None,
        limit: int = 50,
        next_token: str | None = None,
    ) -> TaskPage:
        items, token = self.store.list_tasks(
            status=status, provider=provider, name_prefix=name_prefix, limit=limit, next_token=next_token
        )
        return TaskPage(items=items, next_token=token)

    # ------------------------------------------------------------ create
    def _task_provider(self, key: str) -> Provider:
        provider = self.providers(key)
        if not provider.capabilities.tasks:
            raise Unprocessable(
                f"provider: {key!r} has no outbound dialing tasks (conference dialing only)",
                details=[{"field": "provider", "message": f"{key} has no tasks"}],
            )
        return provider

    def _check_type(self, provider: Provider, task_type: str) -> None:
        types = provider.capabilities.task_types
        if task_type not in types:
            raise Unprocessable(
                f"type: provider {provider.key!r} does not support {task_type!r} tasks; "
                f"supported: {', '.join(sorted(types))}",
                details=[{"field": "type", "provider": provider.key, "supported": sorted(types)}],
            )

    def max_tasks(self, provider: Provider) -> int:
        configured = provider.settings.get("maxTasks")
        if configured:
            return int(configured)
        return provider.limits.max_tasks or DEFAULT_MAX_TASKS

    def create(self, request: CreateTaskRequest) -> Task:
        provider = self._task_provider(request.provider)
        self._check_type(provider, request.type)
        validate_provider_options(provider.key, request.settings.provider_options)
        validate_auto_times(request.settings)
        validate_compliance(request.settings)
        now = utcnow()
        task = Task(
            task_id=new_task_id(),
            name=request.name,
            provider=request.provider,
            type=request.type,
            status="ready",
            settings=request.settings,
            auto_delete=request.auto_delete,
            created_at=now,
            updated_at=now,
            version=0,
        )
        self._reserve(task, provider)
        try:
            provider_task_id = provider.create_task(task_spec(task))
        except Exception:
            self.store.delete_task(task)
            raise
        task = self.store.finish_task(task.task_id, task.version, {"providerTaskId": provider_task_id})
        self._sync_schedules(task, None)
        logger.info("task created", extra={"taskId": task.task_id, "provider": task.provider})
        return task

    def _reserve(self, task: Task, provider: Provider) -> None:
        limit = self.max_tasks(provider)
        for _ in range(5):
            if self.store.create_task(task, max_tasks=limit):
                return
            if not task.auto_delete:
                raise Conflict(
                    f"provider {provider.key!r} already holds {limit} tasks; delete one, "
                    "or create with autoDelete to remove the oldest completed one"
                )
            oldest, _ = self.store.list_tasks(provider=provider.key, status="completed", limit=1, oldest_first=True)
            if not oldest:
                raise Conflict(f"provider {provider.key!r} already holds {limit} tasks and none of them is completed")
            logger.info("auto-deleting the oldest completed task", extra={"taskId": oldest[0].task_id})
            self._delete(oldest[0], provider)
        raise Conflict(f"provider {provider.key!r} is full; try again")

    # ------------------------------------------------------------ update
    def update(self, task_id: str, request: UpdateTaskRequest) -> Task:
        current = self.get(task_id)
        if current.status not in EDITABLE_STATUSES:
            raise Conflict(
                f"a {current.status} task cannot be changed; only {', '.join(sorted(EDITABLE_STATUSES))} tasks can"
            )
        patch = request.settings.model_dump(exclude_unset=True) if request.settings else {}
        for attr, empty in (("caller_ids", []), ("provider_options", {})):
            if attr in patch and patch[attr] is None:
                patch[attr] = empty
        settings = TaskSettings.model_validate({**dict(current.settings), **patch})
        provider = self._task_provider(current.provider)
        validate_provider_options(provider.key, settings.provider_options)
        validate_auto_times(settings, changed=set(patch))
        validate_compliance(settings)
        updated = current.model_copy(update={"name": request.name or current.name, "settings": settings})
        claimed = self._claim(current, "update")
        try:
            if current.provider_task_id:
                provider.update_task(current.provider_task_id, task_spec(updated))
        except Exception:
            self.store.release_task(task_id, claimed.version)
            raise
        task = self.store.finish_task(
            task_id,
            claimed.version,
            {"name": updated.name, "settings": _json(settings), "updatedAt": utcnow().isoformat()},
        )
        self._sync_schedules(task, current)
        return task

    # ------------------------------------------------------------ lifecycle
    def _claim(self, current: Task, operation: str) -> Task:
        claimed = self.store.claim_task(current.task_id, current.version, operation)
        if claimed is None:
            raise Conflict(f"another change of task {current.task_id!r} is under way or just happened; read it again")
        return claimed

    def transition(self, task_id: str, action: Action) -> Task:
        current = self.get(task_id)
        target = TRANSITIONS[action].get(current.status)
        if target is None:
            allowed = sorted(TRANSITIONS[action])
            raise Conflict(
                f"cannot {action} a {current.status} task (allowed from: {', '.join(allowed)})",
                details={"status": current.status, "action": action, "allowedFrom": allowed},
            )
        provider = self._task_provider(current.provider) if action != "fail" else None
        claimed = self._claim(current, action)
        if action == "start":
            return self._start(current, claimed, provider)
        # pause, stop, complete, fail: releases stop at once (the status changes first), then the provider
        task = self.store.finish_task(task_id, claimed.version, {"status": target, "updatedAt": utcnow().isoformat()})
        self._after_transition(task, action)
        if provider is not None and task.provider_task_id:
            task = self._quiet_provider(task, provider, action)
        logger.info("task transition", extra={"taskId": task_id, "action": action, "status": target})
        return task

    def _start(self, current: Task, claimed: Task, provider: Provider | None) -> Task:
        """Start (or resume) at the provider first: when it fails the task keeps its status (502).
        Then the first wave of contacts is released."""
        resume_at_provider = current.status == "ready" or current.provider_state in ("paused", "stopped")
        try:
            if provider is not None and current.provider_task_id and resume_at_provider:
                provider.start_task(current.provider_task_id)
        except Exception as exc:
            self.store.release_task(current.task_id, claimed.version)
            if isinstance(exc, ProviderError):
                logger.warning(
                    "provider refused a start",
                    extra={"taskId": current.task_id, "provider": exc.provider, "code": exc.provider_code},
                )
            raise
        changes = {"status": "running", "providerState": "running", "providerNote": None}
        task = self.store.finish_task(current.task_id, claimed.version, changes | {"updatedAt": utcnow().isoformat()})
        self._after_transition(task, "start")
        logger.info("task transition", extra={"taskId": task.task_id, "action": "start", "status": "running"})
        if self.dispatch is not None:
            self.dispatch(task.task_id)
        return task

    def _quiet_provider(self, task: Task, provider: Provider, action: str) -> Task:
        """Tell the provider: pause where it can pause (otherwise withdraw what it holds and has not
        dialled, where it can); stop where it can stop (otherwise pause, otherwise withdraw); a
        completed task is stopped there when the provider can. What the provider still dials after
        this is at most what was released before (the hopper level): README "Dialing engine"."""
        assert task.provider_task_id is not None
        steps: list[tuple[str, Callable[[], object]]] = []
        ptid = task.provider_task_id
        if action == "pause":
            steps = [("paused", lambda: provider.pause_task(ptid))]
        elif action in ("stop", "complete"):
            steps = [("stopped", lambda: provider.stop_task(ptid)), ("paused", lambda: provider.pause_task(ptid))]
        if action in ("pause", "stop") and self.withdraw is not None:
            withdraw = self.withdraw
            steps.append(("withdrawn", lambda: withdraw(task, provider)))
        note: str | None = None
        state: str | None = None
        # a pause or stop waits for a wave under way; a completion comes from within a run, with nothing left
        hold = self.quiet is not None and action in ("pause", "stop")
        with self.quiet(provider.key) if hold and self.quiet is not None else nullcontext():
            for name, step in steps:
                try:
                    step()
                except NotSupported:
                    continue
                except ProviderError as exc:
                    note = f"{action}: the provider refused ({exc.message})"[:500]
                    logger.warning("provider refused a transition", extra={"taskId": task.task_id, "action": action})
                    break
                state = name if name != "withdrawn" else task.provider_state
                break
            else:
                note = f"{action}: {provider.key} can neither pause nor withdraw; it finishes what was released"
        changes = {"providerState": state or task.provider_state, "providerNote": note}
        return self.store.set_task_fields(task.task_id, changes) or task

    def on_schedule(self, event: ScheduleEvent) -> ScheduleOutcome:
        """An auto start/stop schedule fired. Nothing happens for a deleted task, a task already
        in the target state, or one the action is not allowed from (e.g. auto start of a stopped
        task); a provider failure is raised so Scheduler retries, then dead-letters."""
        task = self.store.get_task(event.task_id)
        if task is None:
            return ScheduleOutcome(handled=False, reason="task deleted", task_id=event.task_id)
        target = {"start": "running", "stop": "stopped"}[event.action]
        if task.status == target:
            return ScheduleOutcome(handled=False, reason="already " + target, task_id=task.task_id, status=task.status)
        if task.status not in TRANSITIONS[event.action]:
            return ScheduleOutcome(
                handled=False, reason=f"not allowed from {task.status}", task_id=task.task_id, status=task.status
            )
        try:
            task = self.transition(task.task_id, event.action)
        except Conflict as exc:
            return ScheduleOutcome(handled=False, reason=exc.message, task_id=event.task_id)
        return ScheduleOutcome(handled=True, reason=f"auto {event.action}", task_id=task.task_id, status=task.status)

    def on_provider_status(self, event: TaskLifecycleEvent) -> ScheduleOutcome | None:
        """A provider says one of its tasks finished (nxcloud and airudder push it). outcall decides
        completion from the results it records, so a finished task at the provider only makes the
        dispatcher look at the task (it completes it when nothing is queued or in flight); a provider
        that says its task failed fails the task here."""
        action = PROVIDER_FINISHED.get((event.status or "").lower())
        if event.kind != "task-status" or action is None or not event.provider_task_id:
            return None
        task_id = self.store.task_id_for(event.provider, event.provider_task_id)
        if task_id is None:
            return None
        if action == "complete":
            if self.dispatch is not None:
                self.dispatch(task_id)
            return ScheduleOutcome(handled=True, reason=f"provider says {event.status}: dispatch", task_id=task_id)
        try:
            task = self.transition(task_id, action)
        except (Conflict, NotFound) as exc:
            return ScheduleOutcome(handled=False, reason=exc.message, task_id=task_id)
        return ScheduleOutcome(
            handled=True, reason=f"provider says {event.status}", task_id=task_id, status=task.status
        )

    def complete(self, task_id: str) -> Task | None:
        """Every contact of a running task has its outcome and nothing is queued (the dispatcher saw it)."""
        try:
            return self.transition(task_id, "complete")
        except (Conflict, NotFound):
            return None

    # ------------------------------------------------------------ delete and clone
    def delete(self, task_id: str) -> None:
        current = self.get(task_id)
        provider = self._task_provider(current.provider)
        self._delete(current, provider)

    def _delete(self, current: Task, provider: Provider) -> None:
        claimed = self._claim(current, "delete")
        try:
            if current.provider_task_id:
                provider.delete_task(current.provider_task_id)
        except NotSupported:
            logger.info("provider cannot delete tasks; forgetting it here", extra={"taskId": current.task_id})
        except Exception:
            self.store.release_task(current.task_id, claimed.version)
            raise
        self._remove_schedules(current.task_id)
        self.store.delete_task(claimed)  # call records are separate items and stay
        logger.info("task deleted", extra={"taskId": current.task_id, "provider": current.provider})

    def clone(self, task_id: str, request: CloneTaskRequest) -> CloneResult:
        source = self.get(task_id)
        now = utcnow()
        settings = source.settings
        notes: list[str] = []
        past = {
            attr: None
            for attr in ("auto_start_at", "auto_stop_at")
            if getattr(settings, attr) is not None and getattr(settings, attr) <= now
        }
        if past:
            settings = settings.model_copy(update=past)
            notes.append("auto start/stop times already past were not copied")
        task = self.create(
            CreateTaskRequest(
                name=request.name or f"{source.name} (copy)",
                provider=source.provider,
                type=source.type,
                settings=settings,
                auto_delete=source.auto_delete,
            )
        )
        import_id = None
        if request.with_contacts:
            if self.copy_contacts is None:
                raise NotSupported(task.provider, "cloning contacts here")
            import_id = self.copy_contacts(source.task_id, task.task_id)
            notes.append("the contacts the source task has at its provider are being copied")
        return CloneResult(task=task, contacts_import_id=import_id, note="; ".join(notes) or None)

    # ------------------------------------------------------------ schedules
    def _sync_schedules(self, task: Task, previous: Task | None) -> None:
        if self.schedules is None:
            return
        for action, attr in (("start", "auto_start_at"), ("stop", "auto_stop_at")):
            when: datetime | None = getattr(task.settings, attr)
            before: datetime | None = getattr(previous.settings, attr) if previous else None
            if when is None or task.status in FINAL_STATUSES:
                if before is not None:
                    self.schedules.remove(task.task_id, action)
            elif when != before and when > utcnow():
                self.schedules.put(task.task_id, action, when.astimezone(UTC), task.version)

    def _after_transition(self, task: Task, action: str) -> None:
        if self.schedules is None:
            return
        if task.status in FINAL_STATUSES:
            self._remove_schedules(task.task_id)
        elif action == "start" and task.settings.auto_start_at is not None:
            self.schedules.remove(task.task_id, "start")

    def _remove_schedules(self, task_id: str) -> None:
        if self.schedules is None:
            return
        for action in ("start", "stop"):
            self.schedules.remove(task_id, action)


# ---------------------------------------------------------------- entry points for other functions


def default_service(copy_contacts: Callable[[str, str], str] | None = None) -> TaskService:
    """The service of this Lambda environment: default store, provider settings from the secret,
    the task schedules."""
    from outcall.config import provider_settings
    from outcall.dispatch import request_dispatch
    from outcall.providers import get_provider
    from outcall.schedules import TaskSchedules
    from outcall.store import default_store

    return TaskService(
        default_store(),
        lambda key: get_provider(key, provider_settings()),
        TaskSchedules(),
        copy_contacts,
        dispatch=lambda task_id: request_dispatch(task_id, "provider finished its task"),
    )


def on_lifecycle(event: TaskLifecycleEvent, service: TaskService | None = None) -> ScheduleOutcome | None:
    """A provider's push about one of its tasks (webhook intake): see TaskService.on_provider_status."""
    return (service or default_service()).on_provider_status(event)
