"""The only code that talks to DynamoDB.

One table, keys `pk`/`sk`, a GSI (`gsi1pk`/`gsi1sk`), a sparse GSI (`gsi2pk`/`gsi2sk`: only the
imports that have not ended, for the stalled-import check) and a TTL attribute `expiresAt`:

| item          | pk                  | sk                  | gsi1pk        | gsi1sk                |
|---------------|---------------------|---------------------|---------------|-----------------------|
| API token     | TOKEN#<sha256>      | TOKEN               | TOKENS        | <createdAt>#<name>    |
| import job    | IMPORT#<importId>   | IMPORT              | TASK#<taskId> | IMPORT#<createdAt>    |
| import chunk  | IMPORT#<importId>   | CHUNK#<n>           | -             | -                     |
| open import   | (the job's; gsi2)   | gsi2pk IMPORTS#OPEN | gsi2sk <createdAt>#<importId> (removed when it ends) |  |
| contact       | CONTACTS#<taskId>#<shard> | CONTACT#<e164> | see hopper.py | see hopper.py         |
| dispatch lease| PROVIDER#<provider> | DISPATCH            | -             | -                     |
| releases/min  | PROVIDER#<provider> | PACE#<minute>       | -             | -                     |
| numbers used  | PROVIDER#<provider> | NUMBERS             | -             | -                     |
| task          | TASK#<taskId>       | TASK                | TASKS         | <createdAt>#<taskId>  |
| task counts   | TASK#<taskId>       | COUNTS              | -             | -                     |
| task counter  | PROVIDER#<provider> | TASKCOUNT           | -             | -                     |
| raw push      | PUSH#<pushId>       | PUSH                | -             | -                     |
| call record   | CALLS#<taskId>      | CALL#<recordId>     | CALLS#<taskId>| <firstSeenAt>#<recordId> |
| call event    | CALLS#<taskId>      | EVENT#<recordId>#<eventId> | -      | -                     |
| ptask lookup  | PTASK#<provider>#<providerTaskId> | PTASK | -             | -                     |
| lifecycle evt | LIFECYCLE#<provider>#<providerTaskId> | EVENT#<dedupKey> | - | -                    |
| poll cursor   | POLL#<provider>     | CURSOR              | -             | -                     |
| meeting       | MEETING#<eventId>   | MEETING             | -             | -                     |
| meeting callee| MEETING#<eventId>   | CALLEE#<e164>       | -             | -                     |
| meeting sched.| MEETING#<eventId>   | SCHEDULE#<dueAt>    | -             | -                     |
| do-not-call   | DNC#ACCOUNT or DNC#TASK#<taskId> | NUMBER#<e164> | -    | -                     |
| dnc upload    | DNCIMPORT#<importId> | DNCIMPORT         | -             | -                     |
| attempt log   | CAP#<e164>          | ATTEMPTS            | -             | -                     |

Compliance (store/dnc.py, store/caps.py). Do-not-call entries are one partition per list (the
account's, or a task's); `expiresAt` is their TTL and is checked at every read, since TTL deletes late.
A number's attempt log (release key -> time, for the frequency caps) is one item per number for every
task and provider, written on the condition that its `version` did not change since it was read.

Each kind of item has its module in this package (tokens, imports, tasks, ...), a mixin of
`Store`; later capabilities add theirs the same way.

Tasks. `GET /tasks` is one Query of gsi1 `TASKS` (newest first) with the status, provider and
name-prefix filters as a FilterExpression; pages are cut at `limit` items and the next page
starts after the last item returned (`nextToken` is that key, base64 JSON). A deployment holds
at most 100 tasks per provider account, so the one `TASKS` partition stays small. A task item
carries `version` (bumped by every write, checked by every conditional write) and, while an
operation is at its provider, `pending` (`create`, `start`, `pause`, `stop`, `update`, `delete`,
...) and `pendingAt`: claiming an operation is a conditional update that only one caller wins;
a claim older than PENDING_STALE_SECONDS (a crashed caller) may be taken over. The task counter
of a provider is updated in the same transaction that puts or deletes a task, conditioned on
staying under the limit. The counts item (`contacts.<status>`, `calls.<outcome>`) is kept current
by the writers of contacts and calls (`add_task_counts`); reading a task is one Query of its
partition, which returns the task and its counts together.

Contacts and imports (store/contacts.py, store/imports.py). A task holds a number once: the contact's
sort key is its E.164 number and it is written by a conditional put. The counts item also holds
`numbersUsed`, reserved by imports against the task's and the account's number limits in one
transaction. An import's chunks are items of its partition; finishing a chunk adds its counts to
the job and the task in one transaction, once.

Calls (store/calls.py). A verified push is kept once as `PUSH#<pushId>` (sha256 of provider, kind
and body, so redeliveries are one item; TTL 30 days) before it is queued. Call records live in their
own partition `CALLS#<taskId>` (never in `TASK#<taskId>`, whose Query must stay small), or
`CALLS#-<provider>#<providerTaskId>` when no task here has that provider task id. A record is written
with conditions only: created if absent, else overwritten only while its status is one the caller
allows (a final status is never replaced); reaching a final status adds `calls.<status>` to the
task's counts item in the same transaction, so it is counted once. Every event of a call is kept
as `EVENT#<recordId>#<eventId>` (conditional put: a redelivered event is one item). `GET
/tasks/{taskId}/calls` is a Query of gsi1 `CALLS#<taskId>` (oldest first; `since` bounds gsi1sk).
The provider-task-id lookup item is written the first time a call of that task arrives (found
by a Query of gsi1 `TASKS`). Pollers keep one cursor per provider.

Meetings (store/meetings.py). One partition per meeting: the meeting, its callees and its schedules are
read with one Query. A callee's sort key is its E.164 number, so adding a number twice is a failed
conditional put; its `dialState` only changes by a conditional update on the state expected
(`pending` -> `dialling` -> `dialled`/`failed`, or `pending` -> `missed`).
"""

from __future__ import annotations

from functools import lru_cache

from outcall.store.base import GSI1, StoreBase, decode_page_token, encode_page_token, utcnow
from outcall.store.calls import CallItems
from outcall.store.caps import CapItems
from outcall.store.contacts import ContactItems
from outcall.store.dnc import DncItems
from outcall.store.hopper import HopperItems
from outcall.store.imports import ImportItems
from outcall.store.meetings import MeetingItems
from outcall.store.tasks import PENDING_STALE_SECONDS, TaskItems
from outcall.store.tokens import TokenItems

__all__ = [
    "GSI1",
    "PENDING_STALE_SECONDS",
    "Store",
    "StoreBase",
    "decode_page_token",
    "default_store",
    "encode_page_token",
    "utcnow",
]


class Store(TokenItems, ImportItems, ContactItems, HopperItems, TaskItems, MeetingItems, CallItems, DncItems, CapItems):
    """Every item of the table, one mixin per kind of item."""


@lru_cache(maxsize=1)
def default_store() -> Store:
    """The store of this Lambda environment (one per process, reused across invocations)."""
    return Store()
