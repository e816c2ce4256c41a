"""Contacts of a task: claimed here once per number, then handed to the task's provider.

`add_rows` is the one path by which rows become contacts, for a JSON request and for a chunk of an
uploaded file alike:

1. every accepted row claims its number with a conditional put (store.claim_contacts): a number the
   task already holds makes the row a duplicate (`already_in_task`); a number whose earlier
   contact was rejected or failed at the provider is taken over; a row this very import claimed
   before (a chunk delivered again after a crash) is still this import's and is not a duplicate;
2. the claimed contacts go to the provider in its batch size (its module retries 5xx, 429 and
   timeouts); each batch's answers are written to the contacts before the next batch, so a chunk
   worked again sends nobody twice;
3. the counts the caller adds once (store.finish_chunk): rows by outcome and reason, provider
   answers, contacts by provider status, and the reserved numbers that were not used.

A provider failure that may pass (5xx, 429, timeout) is raised while attempts remain, so the SQS
message comes back later; on the last attempt (and for a JSON request, which has one) the batch's
contacts are kept with provider status `failed` and the provider's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, Strict

from outcall import limits
from outcall.calllists import ACCEPTED, DUPLICATE, INVALID, RowOutcome
from outcall.errors import ProviderError
from outcall.models import Contact, ContactOutcome, InputModel, Model, Region, Task
from outcall.observability import logger
from outcall.providers.base import Provider
from outcall.store import Store
from outcall.store.contacts import ADDED, FAILED, PENDING, REJECTED

MAX_JSON_CONTACTS: Final = 10_000
FINAL_TASK_STATUSES: Final = frozenset({"stopped", "completed", "failed"})

Scalar = str | int | float | bool | None


def _text(value: str | int) -> str:
    return str(value)


# countryCode, mobile, areaCode, phone, externalId: text, or a JSON integer kept as its digits;
# true/false is neither (a strict int refuses it), so it is a 422 naming the field
NumberText = Annotated[
    Annotated[str, Field(max_length=limits.NUMBER_PART_CHARS)]
    | Annotated[int, Strict(), Field(ge=0, lt=10**limits.NUMBER_PART_CHARS)],
    AfterValidator(_text),
]
IdText = Annotated[
    Annotated[str, Field(max_length=limits.CONTACT_TEXT_CHARS)]
    | Annotated[int, Strict(), Field(gt=-(10**limits.DYNAMODB_NUMBER_DIGITS), lt=10**limits.DYNAMODB_NUMBER_DIGITS)],
    AfterValidator(_text),
]
VariableName = Annotated[str, Field(min_length=1, max_length=limits.VARIABLE_NAME_CHARS)]
VariableValue = Annotated[str, Field(max_length=limits.VARIABLE_VALUE_CHARS)] | int | float | bool | None


Variables = Annotated[
    dict[VariableName, VariableValue],
    Field(
        max_length=limits.MAX_VARIABLES,
        description=f"per-contact variables for robot scripts: at most {limits.MAX_VARIABLES}, names of at most "
        f"{limits.VARIABLE_NAME_CHARS} characters, values (text, numbers, booleans) of at most "
        f"{limits.VARIABLE_VALUE_CHARS} characters, {limits.VARIABLES_BYTES} bytes in all as JSON",
    ),
    AfterValidator(limits.bounded_json(max_bytes=limits.VARIABLES_BYTES, max_depth=1)),
]


# ---------------------------------------------------------------- API models


class ContactInput(InputModel):
    """One contact of a JSON import: the fields of a call-list row (see README "Call lists")."""

    name: str | None = Field(None, max_length=limits.CONTACT_TEXT_CHARS)
    company: str | None = Field(None, max_length=limits.CONTACT_TEXT_CHARS)
    country_code: NumberText | None = Field(None, description="86, +86, 0086")
    mobile: NumberText | None = Field(None, description="a mobile number; with a leading + it is international")
    area_code: NumberText | None = Field(None, description="landline area code without its leading 0")
    phone: NumberText | None = Field(None, description="a landline number (with areaCode)")
    external_id: IdText | None = Field(None, description="your id of the contact (a JSON integer is kept as text)")
    variables: Variables = Field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The contact as a call-list row keyed by header name (variables become extra columns)."""
        fields = {
            "name": self.name,
            "company": self.company,
            "countryCode": self.country_code,
            "mobile": self.mobile,
            "areaCode": self.area_code,
            "phone": self.phone,
            "externalId": self.external_id,
        }
        # `mobile` is always there, so a contact without a number is `missing_number`
        return {**{k: v for k, v in fields.items() if v is not None or k == "mobile"}, **self.variables}


class AddContactsRequest(InputModel):
    contacts: list[ContactInput] = Field(min_length=1, max_length=MAX_JSON_CONTACTS)
    default_region: Region = Field("CN", description="ISO 3166 region of numbers given without a country code")


class ContactResult(Model):
    index: int = Field(description="position in the request, from 0")
    outcome: str = Field(description="accepted, duplicate or invalid")
    e164: str | None = None
    reason: str | None = None
    message: str | None = None
    provider_status: str | None = Field(None, description="for accepted contacts: added, rejected or failed")
    provider_reason: str | None = None


class AddContactsResult(Model):
    import_id: str
    task_id: str
    status: str
    rows: int
    accepted: int
    duplicate: int
    invalid: int
    provider_added: int
    provider_rejected: int
    provider_failed: int
    contacts: list[ContactResult]


class ContactPage(Model):
    items: list[Contact]
    next_token: str | None = None


# ---------------------------------------------------------------- rules


def task_refusal(task: Task, provider: Provider) -> str | None:
    """Why the task cannot take contacts now, or None when it can."""
    if not provider.capabilities.tasks:
        return f"provider {provider.key!r} has no outbound dialing tasks to add contacts to"
    if task.status in FINAL_TASK_STATUSES:
        return f"the task is {task.status}: contacts can be added to ready, running or paused tasks only"
    if not task.provider_task_id:
        return "the task is not created at its provider yet"
    return None


def number_limits(provider: Provider) -> tuple[int | None, int | None]:
    """(numbers per task, numbers per account): the provider's documented limits, unless its
    settings (`maxNumbersPerTask`, `maxNumbersPerAccount`) say lower ones."""
    limits = []
    for setting, documented in (
        ("maxNumbersPerTask", provider.limits.max_numbers_per_task),
        ("maxNumbersPerAccount", provider.limits.max_numbers_per_account),
    ):
        configured = provider.settings.get(setting)
        limits.append(int(configured) if configured else documented)
    return limits[0], limits[1]


def limit_message(verdict: str, provider: Provider, wanted: int) -> str:
    per_task, per_account = number_limits(provider)
    if verdict == "task-limit":
        return f"the task may hold {per_task} numbers at {provider.key}; {wanted} more do not fit"
    return f"the {provider.key} account may hold {per_account} numbers; {wanted} more do not fit"


# ---------------------------------------------------------------- adding rows


@dataclass
class AddedRows:
    """What `add_rows` made of a list of rows: counts for the job and the task, and each accepted
    row's provider status (by row number)."""

    job_counts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    task_counts: dict[str, int] = field(default_factory=dict)
    provider: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    unused: int = 0  # reserved numbers not used: give them back


def _contact_item(outcome: RowOutcome, import_id: str) -> dict[str, Any]:
    spec = outcome.contact
    assert spec is not None
    return {
        **spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "importId": import_id,
        "row": outcome.row,
    }


def _bump(counter: dict[str, int], key: str, by: int = 1) -> None:
    counter[key] = counter.get(key, 0) + by


def add_rows(
    store: Store,
    provider: Provider,
    task: Task,
    import_id: str,
    outcomes: Sequence[RowOutcome],
    *,
    reserved: int,
    final_attempt: bool,
) -> AddedRows:
    """Make contacts of the accepted rows (see the module docstring). Rows found to be duplicates
    of the task's contacts are changed in place to `duplicate`, so the caller's report shows them."""
    assert task.provider_task_id is not None
    result = AddedRows()
    accepted = [o for o in outcomes if o.status == ACCEPTED]
    claims = store.claim_contacts(task.task_id, [_contact_item(o, import_id) for o in accepted])

    to_send: list[RowOutcome] = []
    for outcome, claim in zip(accepted, claims, strict=True):
        previous = claim.previous
        if claim.claimed:
            to_send.append(outcome)
            if previous and previous.get("importId") != import_id:  # a rejected/failed contact taken over
                _bump(result.task_counts, f"contacts.{previous.get('providerStatus')}", -1)
        elif previous is not None and claim.held_by(import_id, outcome.row):
            status = str(previous.get("providerStatus"))
            if status == PENDING:
                to_send.append(outcome)
            else:
                result.provider[outcome.row] = (status, previous.get("providerReason"))
        elif previous is not None:
            outcome.status = DUPLICATE
            outcome.reason = "already_in_task"
            where = f"row {previous.get('row')} of import {previous.get('importId')}"
            outcome.message = f"the task already has this number ({where})"
        else:  # the holder vanished between the put and its answer: let the message come again
            raise RuntimeError(f"contact of row {outcome.row} changed while being claimed; try again")

    batch_size = provider.limits.batch_size
    for start in range(0, len(to_send), batch_size):
        batch = to_send[start : start + batch_size]
        answers = _send(provider, task.provider_task_id, batch, final_attempt=final_attempt)
        store.set_contact_outcomes(
            task.task_id,
            import_id,
            [
                {"e164": o.e164, "providerStatus": status, "providerReason": reason, "providerRef": ref}
                for o, (status, reason, ref) in zip(batch, answers, strict=True)
            ],
        )
        for o, (status, reason, _) in zip(batch, answers, strict=True):
            result.provider[o.row] = (status, reason)

    return tally(outcomes, result, reserved)


def tally(outcomes: Sequence[RowOutcome], result: AddedRows, reserved: int) -> AddedRows:
    """Count the rows by outcome and reason, and the accepted ones by provider status; what was
    reserved and is not at the provider is `unused` (given back to the task and the account)."""
    for outcome in outcomes:
        _bump(result.job_counts, "rows")
        _bump(result.job_counts, outcome.status)
        if outcome.status != ACCEPTED:
            _bump(result.reasons, outcome.reason or outcome.status)
            continue
        status, _ = result.provider[outcome.row]
        _bump(result.job_counts, "provider" + status.capitalize())
        _bump(result.task_counts, f"contacts.{status}")
    added = sum(1 for status, _ in result.provider.values() if status == ADDED)
    result.unused = reserved - added
    if result.unused:
        result.task_counts["numbersUsed"] = -result.unused
    return result


def _send(
    provider: Provider, provider_task_id: str, batch: Sequence[RowOutcome], *, final_attempt: bool
) -> list[tuple[str, str | None, str | None]]:
    """(provider status, reason, provider ref) for each contact of one batch."""
    specs = [o.contact for o in batch]
    try:
        answers: list[ContactOutcome] = provider.add_contacts(provider_task_id, specs)  # type: ignore[arg-type]
    except ProviderError as exc:
        if exc.retryable and not final_attempt:
            raise
        logger.warning(
            "provider failed a batch of contacts",
            extra={"provider": provider.key, "contacts": len(batch), "code": exc.provider_code},
        )
        return [(FAILED, exc.message, None)] * len(batch)
    by_number: Mapping[str, ContactOutcome] = {a.e164: a for a in answers}
    found: list[tuple[str, str | None, str | None]] = []
    for o in batch:
        answer = by_number.get(o.e164 or "")
        if answer is None:
            found.append((FAILED, "the provider gave no answer for this contact", None))
        elif answer.accepted:
            found.append((ADDED, None, answer.provider_ref))
        else:
            found.append((REJECTED, answer.reason or "rejected by the provider", answer.provider_ref))
    return found


def report_reason(outcome: RowOutcome, provider_answer: tuple[str, str | None] | None) -> RowOutcome:
    """For the report: an accepted row the provider refused says so in its reason and message."""
    if outcome.status == ACCEPTED and provider_answer and provider_answer[0] in (REJECTED, FAILED):
        outcome.reason = f"provider_{provider_answer[0]}"
        outcome.message = provider_answer[1]
    return outcome


def invalidate(outcome: RowOutcome, reason: str, message: str) -> None:
    """Turn an accepted row into an invalid one (over a limit, task gone) with the reason why."""
    if outcome.status == ACCEPTED:
        outcome.status = INVALID
        outcome.reason = reason
        outcome.message = message
        outcome.e164 = None
