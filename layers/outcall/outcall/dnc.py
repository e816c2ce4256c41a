"""Do-not-call lists: the account-wide list and one list per task (items in store/dnc.py).

An entry is an E.164 number, normalised as imports normalise numbers (outcall.phones), with an optional
`expiresAt`, a `reason` and a `source`: `api` (POST /dnc), `upload` (a CSV/XLSX list uploaded through
POST /dnc/uploads: outcall.dnc_uploads; the entry names its `importId`), `import` (a call list's rows
refused as listed), `provider-opt-out` (a call result whose intents include one of the provider's
`optOutIntents` settings). A number on the account list or on a task's list is

- refused at import: the row is `invalid` with reason `dnc` (counted in the import's `reasons`),
- never released: the dispatcher checks every contact right after claiming it and before sending it
  (consistent reads), and skips it (`skipReason: dnc`),
- withdrawn when the provider holds it already: every dispatcher run checks the task's released contacts
  and cancels listed ones with Provider.cancel_contacts; where the provider cannot (NotSupported, or it
  dialled already) the contact keeps a `complianceNote` saying so, and it is never released again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import Field, field_validator

from outcall.errors import NotFound, Unprocessable
from outcall.models import InputModel, IsoDateTime, Model, Region
from outcall.observability import logger, mask_phone
from outcall.store import Store, utcnow
from outcall.store.dnc import ACCOUNT, task_list

MAX_NUMBERS_PER_REQUEST: Final = 1000
EXAMPLE_ADD: Final = {
    "numbers": ["+8613800138000", "13900139000"],
    "reason": "asked not to be called",
    "expiresAt": "2030-01-01T00:00:00+08:00",
}
EXAMPLE_ADDED: Final = {"scope": "account", "added": 2, "numbers": ["+8613800138000", "+8613900139000"]}
EXAMPLE_ENTRY: Final = {
    "e164": "+8613800138000",
    "scope": "account",
    "reason": "asked not to be called",
    "source": "api",
    "createdAt": "2026-12-01T08:00:00+00:00",
    "expiresAt": "2029-12-31T16:00:00Z",
}
EXAMPLE_PAGE: Final = {"items": [EXAMPLE_ENTRY], "nextToken": None}
DncSource = Literal["api", "upload", "import", "provider-opt-out"]


class AddDncRequest(InputModel):
    numbers: list[str] = Field(min_length=1, max_length=MAX_NUMBERS_PER_REQUEST, description="numbers to list")
    reason: str | None = Field(default=None, max_length=500)
    expires_at: IsoDateTime | None = Field(default=None, description="the entry ends then (ISO 8601 with an offset)")
    default_region: Region = Field("CN", description="ISO 3166 region of numbers given without a country code")

    @field_validator("numbers")
    @classmethod
    def _short(cls, value: list[str]) -> list[str]:
        for i, number in enumerate(value):
            if len(number) > 40:
                raise ValueError(f"numbers[{i}] is longer than 40 characters")
        return value


class DncEntry(Model):
    e164: str
    scope: Literal["account", "task"] = Field(description="the account's list or a task's")
    task_id: str | None = None
    reason: str | None = None
    source: DncSource
    import_id: str | None = Field(default=None, description="the upload that listed it (source `upload`)")
    created_at: datetime
    expires_at: datetime | None = None


class DncAdded(Model):
    scope: Literal["account", "task"] = Field(description="the account's list or a task's")
    task_id: str | None = None
    added: int
    numbers: list[str] = Field(description="the numbers listed, E.164, in request order")


class DncPage(Model):
    items: list[DncEntry]
    next_token: str | None = None


def entry_of(view: dict[str, Any]) -> DncEntry:
    expires = view.get("expiresAt")
    fields = {**view, "expiresAt": datetime.fromtimestamp(float(expires), UTC) if expires is not None else None}
    return DncEntry.model_validate(fields)


def path_number(text: str) -> str:
    """A number in a path: E.164 with or without its `+` (digits are read as international)."""
    from outcall.phones import normalise_number  # phonenumbers: only for requests that name numbers

    raw = text.strip()
    candidate = raw if raw.startswith("+") else "+" + raw
    result = normalise_number(mobile=candidate)
    if result.e164 is None:
        message = f"{result.reason}: {result.message or 'not an international number'}"
        raise Unprocessable(f"number: {message}", details=[{"field": "number", "message": message}])
    return result.e164


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    """An entry's `expiresAt` as asked: with an offset, in the future (a 422 naming the field otherwise)."""
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise Unprocessable(
            "expiresAt: give a time zone offset (ISO 8601)",
            details=[{"field": "expiresAt", "message": "give a time zone offset"}],
        )
    if expires_at <= now:
        raise Unprocessable(
            "expiresAt: must be in the future", details=[{"field": "expiresAt", "message": "in the past"}]
        )


def list_id_of(store: Store, task_id: str | None) -> str:
    """The account's list (None), or the list of a task that exists (a 404 otherwise)."""
    if task_id is None:
        return ACCOUNT
    if store.get_task(task_id) is None:
        raise NotFound(f"no task {task_id!r}")
    return task_list(task_id)


def request_withdrawals(store: Store, task_id: str | None) -> None:
    """Numbers were listed: running tasks (the one, or all for the account's list) look at what their
    provider holds soon, to withdraw the listed ones."""
    from outcall.dispatch import request_dispatch

    if task_id is not None:
        task = store.get_task(task_id)
        if task is not None and task.status == "running":
            request_dispatch(task_id, "dnc")
        return
    token: str | None = None
    while True:
        tasks, token = store.list_tasks(status="running", limit=100, next_token=token)
        for task in tasks:
            request_dispatch(task.task_id, "dnc")
        if token is None:
            return


class DncService:
    """`on_listed(task_id or None)`: numbers were listed (the account's list when None); the handler
    has the dispatcher of running tasks look at their released contacts soon."""

    def __init__(
        self,
        store: Store,
        on_listed: Callable[[str | None], object] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.on_listed = on_listed
        self.clock = clock

    def _list(self, task_id: str | None) -> str:
        return list_id_of(self.store, task_id)

    def normalise(self, numbers: Sequence[str], default_region: str) -> list[str]:
        """E.164 of every number, or a 422 naming each one that is not a number (nothing is stored)."""
        from outcall.phones import normalise_number

        out, errors = [], []
        for i, number in enumerate(numbers):
            result = normalise_number(mobile=number, default_region=default_region.upper())
            if result.e164 is None:
                errors.append({"field": f"numbers[{i}]", "message": f"{result.reason}: {result.message or ''}".strip()})
            else:
                out.append(result.e164)
        if errors:
            shown = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
            raise Unprocessable(f"{len(errors)} numbers are not phone numbers: {shown}", details=errors)
        return out

    def add(self, request: AddDncRequest, task_id: str | None = None, *, source: DncSource = "api") -> DncAdded:
        now = self.clock()
        check_expiry(request.expires_at, now)
        list_id = self._list(task_id)
        numbers = list(dict.fromkeys(self.normalise(request.numbers, request.default_region)))
        self.put(list_id, numbers, reason=request.reason, source=source, expires_at=request.expires_at, now=now)
        if self.on_listed is not None:
            self.on_listed(task_id)
        return DncAdded(scope="task" if task_id else "account", task_id=task_id, added=len(numbers), numbers=numbers)

    def put(
        self,
        list_id: str,
        numbers: Sequence[str],
        *,
        reason: str | None,
        source: DncSource,
        expires_at: datetime | None = None,
        now: datetime | None = None,
        import_id: str | None = None,
    ) -> None:
        stamp = (now or self.clock()).isoformat()
        entries = [
            {
                "e164": n,
                "reason": reason,
                "source": source,
                "importId": import_id,
                "createdAt": stamp,
                "expiresAt": int(expires_at.timestamp()) if expires_at else None,
            }
            for n in numbers
        ]
        self.store.put_dnc(list_id, entries)
        logger.info("numbers listed", extra={"list": list_id, "n": len(entries), "source": source})

    def opt_out(self, e164: str, provider: str, intent: str) -> None:
        """A provider reported that the callee opted out: the account's list, source provider-opt-out."""
        self.put(ACCOUNT, [e164], reason=f"{provider}: {intent}", source="provider-opt-out")
        logger.info("opt-out listed", extra={"provider": provider, "phone": mask_phone(e164), "intent": intent})

    def get(self, number: str, task_id: str | None = None) -> DncEntry:
        e164 = path_number(number)
        found = self.store.get_dnc(self._list(task_id), e164, self.clock())
        if found is None:
            raise NotFound(f"{mask_phone(e164)} is not on the {'task' if task_id else 'account'} do-not-call list")
        return entry_of(found)

    def delete(self, number: str, task_id: str | None = None) -> None:
        e164 = path_number(number)
        if self.store.delete_dnc(self._list(task_id), e164) is None:
            raise NotFound(f"{mask_phone(e164)} is not on the {'task' if task_id else 'account'} do-not-call list")

    def page(self, task_id: str | None = None, *, limit: int = 100, next_token: str | None = None) -> DncPage:
        items, token = self.store.list_dnc(self._list(task_id), self.clock(), limit=limit, next_token=next_token)
        return DncPage(items=[entry_of(i) for i in items], next_token=token)


def opt_out_intents(settings: dict[str, Any]) -> frozenset[str]:
    """A provider's `optOutIntents` setting (e.g. ["opt_out"]), compared case-insensitively."""
    value = settings.get("optOutIntents") or ()
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    return frozenset(str(v).strip().lower() for v in value)
