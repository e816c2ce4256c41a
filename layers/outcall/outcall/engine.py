"""Wiring of the dialing engine: one TaskService and the Dispatcher it drives, built together so that
each knows the other (the dispatcher completes tasks through the service; the service dispatches,
withdraws and quiets releases through the dispatcher). Used by the task_control handler and the tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from outcall.compliance import Gate
from outcall.dispatch import Dispatcher
from outcall.models import Task
from outcall.providers.base import Provider
from outcall.store import Store, utcnow
from outcall.tasks import Schedules, TaskService


@dataclass(frozen=True)
class Engine:
    tasks: TaskService
    dispatcher: Dispatcher


def build_engine(
    store: Store,
    providers: Callable[[str], Provider],
    *,
    schedules: Schedules | None = None,
    copy_contacts: Callable[[str, str], str] | None = None,
    dispatch: Callable[[str], object] | None = None,
    clock: Callable[[], datetime] = utcnow,
    gate: Callable[[Store, Task], Gate] = Gate,
) -> Engine:
    """`dispatch(task id)` is what a start runs (by default the dispatcher's run itself; the handler
    passes one that hands what a run leaves to the dispatch queue)."""
    holder: list[TaskService] = []
    dispatcher = Dispatcher(
        store, providers, complete=lambda task_id: holder[0].complete(task_id), clock=clock, gate=gate
    )
    tasks = TaskService(
        store,
        providers,
        schedules,
        copy_contacts,
        dispatch=dispatch or dispatcher.run,
        withdraw=dispatcher.withdraw,
        quiet=dispatcher.quiet,
    )
    holder.append(tasks)
    return Engine(tasks, dispatcher)
