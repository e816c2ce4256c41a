"""Contacts of a task: claimed here once per number and stored `queued`; the provider sees none of them
until the task runs and the dispatcher (dispatch.py) releases them.

`add_rows` is the one path by which rows become contacts, for a JSON request and for a chunk of an
uploaded file alike: every accepted row claims its number with one write (store.claim_contacts: one
writer per shard of the task at a time reads which numbers the shard holds and batch-writes the others). A number
the task already holds makes the row a duplicate (`already_in_task`); a number whose earlier contact
was skipped (the provider refused it) is taken over; a row this very import claimed before (a chunk
delivered again after a crash) is still this import's and is not a duplicate. The counts are added
once by the caller (store.finish_chunk): rows by outcome and reason, contacts queued, and the
reserved numbers that were not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, Strict

from outcall import limits
from outcall.calllists import ACCEPTED, DUPLICATE, INVALID, CallListError, Columns, RowOutcome
from outcall.errors import Unprocessable
from outcall.models import Contact, ContactState, InputModel, Model, Region, Task
from outcall.providers.base import Provider
from outcall.store import Store, utcnow

MAX_JSON_CONTACTS: Final = 10_000
# More contacts than this in one JSON request are an import worked by the import queue (answer 202):
# 10,000 contacts took 30 s to answer in one request (bench/results/json_contacts.json), the most API
# Gateway waits; 1,000 answer in about 4 s.
SYNC_JSON_CONTACTS: Final = 1_000
DNC_REASON: Final = "dnc"
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

    @property
    def queued(self) -> bool:
        """Over SYNC_JSON_CONTACTS contacts: an import the queue works (202), not an answer now."""
        return len(self.contacts) > SYNC_JSON_CONTACTS

    def call_list(self) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        """The contacts as the rows of one call list: the header is every field and variable any
        contact has (in order of appearance), a contact without one has it empty (an empty cell is an
        absent field or variable, as in a file). 422 when two names of the header are one column."""
        header = tuple(dict.fromkeys(key for contact in self.contacts for key in contact.record()))
        try:
            Columns.from_header(header)
        except CallListError as exc:
            raise Unprocessable(
                f"the contacts' fields and variables do not make one call list: {exc.message}",
                details=[{"field": "contacts", "message": exc.message}],
            ) from exc
        return header, [dict.fromkeys(header) | contact.record() for contact in self.contacts]


class ContactResult(Model):
    index: int = Field(description="position in the request, from 0")
    outcome: str = Field(description="accepted, duplicate or invalid")
    e164: str | None = None
    reason: str | None = None
    message: str | None = None


class AddContactsResult(Model):
    import_id: str
    task_id: str
    status: str
    rows: int
    accepted: int
    duplicate: int
    invalid: int
    queued: int = Field(description="contacts stored queued: the dispatcher releases them while the task runs")
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
    """What `add_rows` made of a list of rows: counts for the job and the task."""

    job_counts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    task_counts: dict[str, int] = field(default_factory=dict)
    unused: int = 0  # reserved numbers not used: give them back


def _contact_item(outcome: RowOutcome, import_id: str) -> dict[str, Any]:
    spec = outcome.contact
    assert spec is not None
    return {
        **spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"attempt", "release_key"}),
        "importId": import_id,
        "row": outcome.row,
    }


def _bump(counter: dict[str, int], key: str, by: int = 1) -> None:
    counter[key] = counter.get(key, 0) + by


def add_rows(store: Store, task: Task, import_id: str, outcomes: Sequence[RowOutcome], *, reserved: int) -> AddedRows:
    """Store the accepted rows as queued contacts (see the module docstring). Rows found to be
    duplicates of the task's contacts are changed in place to `duplicate`, so the caller's report
    shows them."""
    result = AddedRows()
    refuse_listed(store, task, outcomes)
    accepted = [o for o in outcomes if o.status == ACCEPTED]
    claims = store.claim_contacts(task.task_id, [_contact_item(o, import_id) for o in accepted])
    for outcome, claim in zip(accepted, claims, strict=True):
        previous = claim.previous
        if claim.claimed:
            if previous and previous.get("importId") != import_id:  # a skipped contact taken over
                _bump(result.task_counts, f"contacts.{previous.get('state')}", -1)
        elif previous is not None and claim.held_by(import_id, outcome.row):
            pass  # this import's own row, claimed by an earlier delivery of the chunk
        elif previous is not None:
            outcome.status = DUPLICATE
            outcome.reason = "already_in_task"
            where = f"row {previous.get('row')} of import {previous.get('importId')}"
            outcome.message = f"the task already has this number ({where})"
        else:  # the holder vanished between the put and its answer: let the message come again
            raise RuntimeError(f"contact of row {outcome.row} changed while being claimed; try again")
    return tally(outcomes, result, reserved)


def refuse_listed(store: Store, task: Task, outcomes: Sequence[RowOutcome]) -> int:
    """Rows whose number is on the account's or the task's do-not-call list become `invalid` with reason
    `dnc` (outcall.dnc); how many."""
    accepted = [o for o in outcomes if o.status == ACCEPTED and o.e164]
    if not accepted:
        return 0
    listed = store.listed_numbers([str(o.e164) for o in accepted], task.task_id, utcnow())
    refused = 0
    for outcome in accepted:
        entry = listed.get(str(outcome.e164))
        if entry is not None:
            where = "the account's" if entry["scope"] == "account" else "the task's"
            invalidate(outcome, DNC_REASON, f"the number is on {where} do-not-call list")
            refused += 1
    return refused


def tally(outcomes: Sequence[RowOutcome], result: AddedRows, reserved: int) -> AddedRows:
    """Count the rows by outcome and reason; what was reserved and not stored is `unused` (given
    back to the task and the account)."""
    for outcome in outcomes:
        _bump(result.job_counts, "rows")
        _bump(result.job_counts, outcome.status)
        if outcome.status != ACCEPTED:
            _bump(result.reasons, outcome.reason or outcome.status)
    accepted = result.job_counts.get(ACCEPTED, 0)
    if accepted:
        _bump(result.task_counts, f"contacts.{ContactState.QUEUED}", accepted)
    result.unused = reserved - accepted
    if result.unused:
        result.task_counts["numbersUsed"] = -result.unused
    return result


def invalidate(outcome: RowOutcome, reason: str, message: str) -> None:
    """Turn an accepted row into an invalid one (over a limit, task gone) with the reason why."""
    if outcome.status == ACCEPTED:
        outcome.status = INVALID
        outcome.reason = reason
        outcome.message = message
        outcome.e164 = None
