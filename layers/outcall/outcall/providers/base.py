"""The one interface every provider module implements.

Functions never see provider-specific shapes: they hand a provider TaskSpec / ContactSpec /
Callee models and get back ids, ContactOutcome / DialOutcome lists and CallEvent lists.
A provider that cannot do something raises NotSupported (quanshi has no tasks, xswitch no
webhooks). Limits are declared so callers can plan batches before calling.
"""

from __future__ import annotations

import hmac
from abc import ABC
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from pydantic import Field

from outcall.errors import InvalidSignature, NotSupported
from outcall.models import (
    Callee,
    CallEvent,
    CallingWindow,
    ContactOutcome,
    ContactSpec,
    DialOutcome,
    Model,
    RetryStrategy,
    TaskLifecycleEvent,
    TaskType,
)

T = TypeVar("T")


@dataclass(frozen=True)
class ProviderLimits:
    """What a provider enforces; None means no documented limit."""

    batch_size: int  # contacts (or callees) per add/dial call
    max_tasks: int | None = None  # tasks per account
    max_numbers_per_task: int | None = None
    max_numbers_per_account: int | None = None
    max_running_tasks: int | None = None


@dataclass(frozen=True)
class Capabilities:
    tasks: bool = True  # create/update/delete/start/pause/stop tasks and add contacts
    task_types: frozenset[str] = frozenset({"auto"})
    pause: bool = True
    clone: bool = False  # the provider clones a task itself
    conference_dial: bool = False  # dial a list of callees now
    webhooks: bool = False  # results come back as pushes
    polling: bool = False  # results are fetched by polling (`poll_results`, one cursor per account)
    task_polling: bool = False  # missed pushes are reconciled per dialing task (`poll_task`)


class TaskSpec(Model):
    """A task as providers receive it (already validated by the task-control layer)."""

    name: str
    type: TaskType = "auto"
    caller_ids: list[str] = Field(default_factory=list)
    concurrency: int = 1
    ring_timeout_seconds: int = 30
    retry: RetryStrategy | None = None
    calling_window: CallingWindow | None = None
    auto_start_at: datetime | None = None
    auto_stop_at: datetime | None = None
    provider_options: dict[str, Any] = Field(default_factory=dict)


class PollPage(Model):
    """One poll's events and the cursor to resume from; `cursor` is opaque to callers."""

    events: list[CallEvent] = Field(default_factory=list)
    cursor: str | None = None
    more: bool = False


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Provider(ABC):
    """Base class: every operation raises NotSupported until a provider module implements it.
    Every provider takes the setting `batchSize`, which lowers the batch size it documents."""

    key: ClassVar[str]
    limits: ClassVar[ProviderLimits]
    capabilities: ClassVar[Capabilities]
    # the `{kind}`s of /webhooks/{provider}/{kind} the provider pushes to (the callback URLs outcall
    # gives it); a push to any other kind is refused before it is verified
    webhook_kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        if self.settings.get("batchSize"):  # a per-account override of the documented batch size
            self.limits = replace(type(self).limits, batch_size=int(self.settings["batchSize"]))  # type: ignore[misc]

    def _unsupported(self, operation: str) -> NotSupported:
        return NotSupported(self.key, operation)

    # ---- tasks
    def create_task(self, spec: TaskSpec) -> str:
        """Create the task at the provider; returns the provider's task id."""
        raise self._unsupported("tasks")

    def update_task(self, provider_task_id: str, spec: TaskSpec) -> None:
        raise self._unsupported("task update")

    def delete_task(self, provider_task_id: str) -> None:
        raise self._unsupported("task deletion")

    def start_task(self, provider_task_id: str) -> None:
        raise self._unsupported("task start")

    def pause_task(self, provider_task_id: str) -> None:
        raise self._unsupported("pause")

    def stop_task(self, provider_task_id: str) -> None:
        raise self._unsupported("task stop")

    def clone_task(self, provider_task_id: str, name: str) -> str:
        raise self._unsupported("clone")

    def add_contacts(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        """Add at most `limits.batch_size` contacts; one outcome per contact, in order."""
        raise self._unsupported("tasks")

    def add_contacts_batched(self, provider_task_id: str, contacts: Sequence[ContactSpec]) -> list[ContactOutcome]:
        outcomes: list[ContactOutcome] = []
        for batch in batched(contacts, self.limits.batch_size):
            outcomes.extend(self.add_contacts(provider_task_id, batch))
        return outcomes

    def cancel_contacts(self, provider_task_id: str, refs: Sequence[str]) -> list[str]:
        """Withdraw released contacts the provider has not dialled yet (pause, stop, a number put on a
        do-not-call list). `refs` are the `provider_ref`s add_contacts answered (the E.164 number where it
        answered none). Returns the refs withdrawn; one already dialled or unknown is left out."""
        raise self._unsupported("cancel contacts")

    # ---- conferences
    def dial_now(
        self, conference_ref: str, callees: Sequence[Callee], before_minutes: int | None = None
    ) -> list[DialOutcome]:
        """Dial at most `limits.batch_size` callees now; one outcome per callee, in order.
        `before_minutes` is how far the meeting start still is (0 once it started), for providers
        that schedule the dialling themselves relative to the start (quanshi); others ignore it."""
        raise self._unsupported("conference dialing")

    # ---- results
    def verify_webhook(
        self,
        headers: Mapping[str, str],
        body: bytes,
        kind: str | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> None:
        """Raise InvalidSignature when the push is not from the provider. `query` is the push URL's
        query string, where a provider carries its secret in the URL."""
        raise self._unsupported("webhooks")

    def verify_shared_secret(self, headers: Mapping[str, str], query: Mapping[str, Any] | None) -> None:
        """For providers that prove a push by a per-provider secret rather than a signature:
        settings `webhookSecret`, carried in the URL query (`webhookAuth: "query"`, parameter
        `webhookTokenParam`, default `token`) or in a header (`webhookAuth: "header"`, header
        `webhookHeader`, default `X-Outcall-Token`); compared in constant time."""
        secret = str(self.settings.get("webhookSecret", ""))
        if not secret:
            raise InvalidSignature(f"{self.key} webhookSecret is not configured")
        value: Any
        if self.settings.get("webhookAuth", "query") == "query":
            value = (query or {}).get(self.settings.get("webhookTokenParam", "token"))
            if isinstance(value, list | tuple):
                value = value[0] if value else None
        else:
            wanted = str(self.settings.get("webhookHeader", "X-Outcall-Token")).lower()
            value = next((v for k, v in headers.items() if k.lower() == wanted), None)
        if not value or not hmac.compare_digest(str(value).encode(), secret.encode()):
            raise InvalidSignature(f"{self.key} push without the right webhook token")

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, kind: str | None = None
    ) -> list[CallEvent | TaskLifecycleEvent]:
        raise self._unsupported("webhooks")

    def poll_results(self, cursor: str | None) -> PollPage:
        raise self._unsupported("polling")

    def poll_task(self, provider_task_id: str, cursor: str | None) -> PollPage:
        """One page of a task's results from `cursor`, for providers whose results come by push and
        can be read again per task (capabilities.task_polling)."""
        raise self._unsupported("task polling")
